use std::process::ExitCode;

fn main() -> ExitCode {
    unionrs::sys::proc::ignore_sigpipe();
    unionrs::cli::main(std::env::args_os().collect())
}
