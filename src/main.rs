fn main() {
    if let Err(e) = physflow::cli::run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
