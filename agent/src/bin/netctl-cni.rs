//! `netctl-cni`: the CNI plugin binary (see [`agent::cni`]). Install it in the runtime's CNI
//! plugin directory and name it as `"type"` in a network configuration.

fn main() -> std::process::ExitCode {
    agent::cni::main()
}
