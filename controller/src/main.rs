fn main() {
    eprintln!("ferrolb-controller: the Kubernetes reconciler is not implemented yet (see issue 4)");
    std::process::exit(2);
}
