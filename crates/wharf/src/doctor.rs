//! `wharf doctor`: what this machine can do for wharf's executors, each problem with the command
//! that fixes it.

use anyhow::Result;
use std::process::ExitCode;
use wharf_sandbox::probe::{self, Finding, Verdict};

#[derive(clap::Args)]
pub struct DoctorArgs {
    /// Docker daemon to check (default: DOCKER_HOST, else /var/run/docker.sock).
    #[arg(long, env = "DOCKER_HOST")]
    docker_host: Option<String>,
}

pub async fn run(args: DoctorArgs) -> Result<ExitCode> {
    let mut findings = vec![docker(args.docker_host.as_deref()).await];
    findings.push(probe::user_namespaces());
    findings.push(probe::subordinate_ids());
    let exe = std::env::current_exe()?;
    let scratch = tempfile::Builder::new().prefix("wharf-doctor-").tempdir()?;
    findings.push(probe::sandbox_runs(&exe, &scratch.path().join("probe")).await);
    findings.push(probe::limits());
    findings.push(probe::tun());
    findings.push(probe::rlimits());
    for f in &findings {
        print(f);
    }
    let failed = findings
        .iter()
        .filter(|f| f.verdict == Verdict::Fail)
        .count();
    let docker_ok = findings[0].verdict == Verdict::Ok;
    let sandbox_ok = findings
        .iter()
        .any(|f| f.check.starts_with("sandbox") && f.verdict == Verdict::Ok);
    println!();
    println!(
        "jobs with `image:` can run: {}",
        match (docker_ok, sandbox_ok) {
            (true, true) => "in Docker and in the sandbox",
            (true, false) => "in Docker only",
            (false, true) => "in the sandbox only (no Docker daemon)",
            (false, false) => "nowhere: fix one of the problems above",
        }
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print(f: &Finding) {
    let mark = match f.verdict {
        Verdict::Ok => "ok  ",
        Verdict::Warn => "warn",
        Verdict::Fail => "FAIL",
    };
    println!("{mark}  {}: {}", f.check, f.detail);
    if let Some(fix) = &f.fix {
        println!("      fix: {fix}");
    }
}

async fn docker(host: Option<&str>) -> Finding {
    let shown = host.unwrap_or("unix:///var/run/docker.sock").to_string();
    match tokio::time::timeout(
        std::time::Duration::from_secs(5),
        wharf_run::engine::Engine::connect(host),
    )
    .await
    {
        Ok(Ok(_)) => Finding {
            check: "Docker",
            verdict: Verdict::Ok,
            detail: format!("a daemon answers at {shown}"),
            fix: None,
        },
        Ok(Err(e)) => Finding {
            check: "Docker",
            verdict: Verdict::Warn,
            // The engine's message already says how to fix it.
            detail: format!("no daemon: {e}"),
            fix: None,
        },
        Err(_) => Finding {
            check: "Docker",
            verdict: Verdict::Warn,
            detail: format!("no answer from {shown} within 5 s"),
            fix: Some("check that dockerd is running and DOCKER_HOST is right".into()),
        },
    }
}
