//! The `kubectl-ray` binary: parse, run, and report any failure as one line
//! on stderr with exit code 1 (help and `--help` exit 0).

use std::process::ExitCode;

use clap::error::ErrorKind;

/// Clap's message as one line: its first paragraph (the error and, for
/// missing arguments, their list), without the tips and usage that follow.
fn one_line(text: &str) -> String {
    let paragraph: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    paragraph
        .join(" ")
        .trim_start_matches("error: ")
        .to_string()
}

fn main() -> ExitCode {
    let (cli, explicit) = match kubectl_ray::parse(std::env::args_os()) {
        Ok(v) => v,
        Err(e) => {
            return match e.kind() {
                ErrorKind::DisplayHelp
                | ErrorKind::DisplayVersion
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    // kubectl ray (or a command group) without a command prints its help, as KubeRay's.
                    print!("{}", e.render());
                    ExitCode::SUCCESS
                }
                _ => {
                    eprintln!(
                        "Error: {} (see 'kubectl ray --help')",
                        one_line(&e.render().to_string())
                    );
                    ExitCode::FAILURE
                }
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(kubectl_ray::run(cli, explicit)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
