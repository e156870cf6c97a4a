//! Rebuilds when the console's build output changes (files added or removed as well as
//! changed: Vite names its assets by content hash).

fn main() {
    println!("cargo:rerun-if-changed=../../console/dist");
    println!("cargo:rerun-if-changed=../../console/dist/assets");
}
