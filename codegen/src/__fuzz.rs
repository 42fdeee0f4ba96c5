//! Entry points for the fuzz targets (`fuzz/`) and their corpus replay (`tests/it/fuzz_replay.rs`);
//! not public API. Each feeds raw bytes to one of codegen's parsers of user-written input and
//! panics only on a real bug: every failure must be an [`Error`] with a sensible location.

use crate::{Config, Error, ProtoTree, generate, model};

/// A proto file every manifest input is checked against: one service per role section.
const PROTO: &str = r#"syntax = "proto3";
package fuzz.v1;
message Ping { string text = 1; }
service Store { rpc Get(Ping) returns (Ping); }
service Config { rpc Set(Ping) returns (stream Ping); }
service Logger { rpc Log(stream Ping) returns (Ping); }
"#;

/// A manifest naming `fuzz.v1.Echo`, for the proto source target.
const MANIFEST: &str = "[[plugin]]\nservice = \"fuzz.v1.Echo\"\ntype = \"Echo\"\n";

/// The bytes are a role manifest (`services.toml`) for a fixed proto tree.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut tree = ProtoTree::default();
    tree.file("fuzz/v1/fuzz.proto", PROTO)
        .manifest("services.toml", text);
    check(text, "services.toml", model(&tree).err());
}

/// The bytes are a `.proto` file, with a fixed manifest. Sources that pass the model are also
/// generated: every emitted file must parse (codegen checks that itself and reports an error
/// rather than panicking).
pub fn proto_source(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut tree = ProtoTree::default();
    tree.file("fuzz/v1/echo.proto", text)
        .manifest("services.toml", MANIFEST);
    match model(&tree) {
        Ok(_) => {
            if let Err(err) = generate(&Config::default(), &tree) {
                check(text, "fuzz/v1/echo.proto", Some(err));
            }
        }
        Err(err) => check(text, "fuzz/v1/echo.proto", Some(err)),
    }
}

/// An error located in `file` (whose text is `text`) names a line of it.
fn check(text: &str, file: &str, err: Option<Error>) {
    let Some(err) = err else {
        return;
    };
    let _ = err.to_string();
    if err.file() == file
        && let Some(line) = err.line()
    {
        let lines = text.split('\n').count();
        assert!(
            (1..=lines).contains(&line),
            "{err} (the file has {lines} lines)"
        );
    }
}
