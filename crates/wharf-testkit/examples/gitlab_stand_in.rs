//! Runs the stand-in GitLab outside the tests, for bench/includes.sh:
//! `gitlab_stand_in <fixture root>` prints `<port> <CA PEM path>` on one line, then serves until
//! its standard input closes.

use std::io::Read;

fn main() -> Result<(), wharf_testkit::Error> {
    let Some(root) = std::env::args_os().nth(1) else {
        eprintln!("usage: gitlab_stand_in <fixture root>");
        std::process::exit(2);
    };
    let server = wharf_testkit::gitlab::GitLab::start(std::path::Path::new(&root))?;
    println!("{} {}", server.port(), server.ca_file().display());
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    eprintln!("{} requests served", server.requests().len());
    Ok(())
}
