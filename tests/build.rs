//! Generates the Rust for the interop test tree (`fixtures/interop`) into `OUT_DIR` with our own
//! codegen library, the way a plugin author's `build.rs` would.

#![allow(
    clippy::print_stdout,
    reason = "cargo reads build-script directives from stdout"
)]

use std::path::Path;

fn main() {
    let root = Path::new("fixtures/interop");
    let mut tree = spire_plugin_codegen::ProtoTree::default();
    let proto = root.join("interop/v1/echo.proto");
    let manifest = root.join("services.toml");
    for path in [&proto, &manifest] {
        println!("cargo::rerun-if-changed={}", path.display());
    }
    tree.file("interop/v1/echo.proto", read(&proto));
    tree.manifest(manifest.display().to_string(), read(&manifest));
    let mut config = spire_plugin_codegen::Config::default();
    config.generated_by("tests/build.rs").descriptor_set(true);
    let files = spire_plugin_codegen::generate(&config, &tree)
        .unwrap_or_else(|err| panic!("generating the interop tree: {err}"));
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("interop");
    std::fs::create_dir_all(&out).expect("creating OUT_DIR/interop");
    for file in files {
        std::fs::write(out.join(&file.path), &file.contents).expect("writing generated code");
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}
