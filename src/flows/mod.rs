//! Normalizing flows (in progress).
