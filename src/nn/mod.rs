//! Network parts shared by the pillars.
