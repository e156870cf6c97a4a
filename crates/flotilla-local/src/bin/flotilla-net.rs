//! The `flotilla-net` CNI plugin as an executable of its own (the `flotilla` binary also acts
//! as it when invoked under that name); see `flotilla_local::cni_plugin`.

fn main() {
    std::process::exit(flotilla_local::cni_plugin::main());
}
