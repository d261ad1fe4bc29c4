//! `darkmatter-node`: a headless DarkMatter node. See `runtime_smol::headless`.

fn main() -> std::process::ExitCode {
    runtime_smol::headless::main()
}
