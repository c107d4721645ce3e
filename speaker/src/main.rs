fn main() {
    eprintln!("ferrolb-speaker: not implemented yet (see issues 6 and 7)");
    std::process::exit(2);
}
