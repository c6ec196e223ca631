//! The `irr` binary: everything happens in [`irr_runner::cli`].

fn main() -> std::process::ExitCode {
    irr_runner::cli::main()
}
