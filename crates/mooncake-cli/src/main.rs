fn main() {
    eprintln!("mooncake_cli: not built yet");
    std::process::exit(2);
}
