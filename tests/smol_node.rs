//! The headless node (`runtime_smol::headless`) built inside this test crate, so the `smol_*` tests
//! can run it as a child process through `CARGO_BIN_EXE_smol-node`.

fn main() -> std::process::ExitCode {
    runtime_smol::headless::main()
}
