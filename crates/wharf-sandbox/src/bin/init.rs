//! The sandbox's init stages as a program of their own, for this crate's tests. wharf runs the
//! same stages as `wharf __sandbox-init`.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match wharf_sandbox::dispatch(&args) {
        Some(code) => std::process::exit(code),
        None => {
            eprintln!("usage: wharf-sandbox-init {}", wharf_sandbox::INIT_ARG);
            std::process::exit(2);
        }
    }
}
