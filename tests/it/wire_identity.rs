//! Wire identity: our `proto/` tree must compile to the same descriptors as upstream spire-plugin-sdk and go-plugin.
//!
//! Upstream protos come from the Go module cache (`go mod download` in `tests/go`, pinned by its
//! `go.mod`), never from the repository. Both sides are compiled with protox, without source info,
//! and compared element by element. Every difference becomes one line naming the element by its
//! fully-qualified proto name (files by path, enum values as `<enum>.<VALUE>`), in the form
//! `<element>: <attribute> <ours> != <upstream>`, or `<element>: <kind> only in ours` /
//! `<element>: <kind> only upstream`. Comments, source info and `go_package` are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, EnumOptions, EnumValueDescriptorProto, EnumValueOptions,
    FieldDescriptorProto, FieldOptions, FileDescriptorProto, FileDescriptorSet, MessageOptions,
    MethodDescriptorProto, MethodOptions, OneofDescriptorProto, ServiceDescriptorProto,
    ServiceOptions,
};
use serde::Deserialize;
use spire_plugin_tests::workspace_root;

const SPIRE_SDK: &str = "github.com/spiffe/spire-plugin-sdk";
const GO_PLUGIN: &str = "github.com/hashicorp/go-plugin";
/// spire-plugin-sdk's init service, outside its public `proto/` tree; same relative path in ours.
const SPIRE_INIT: &str = "spire/service/private/init/v1/init.proto";
/// go-plugin's protocol files (in `internal/plugin` upstream, in `plugin/` in ours).
const GO_PLUGIN_FILES: [&str; 3] = [
    "grpc_broker.proto",
    "grpc_controller.proto",
    "grpc_stdio.proto",
];
const GO_PLUGIN_DIR_OURS: &str = "plugin";

#[test]
fn ours_match_upstream() -> Result<()> {
    let modules = download_go_modules(&[SPIRE_SDK, GO_PLUGIN])?;
    let upstream = compile_upstream(&modules[SPIRE_SDK].dir, &modules[GO_PLUGIN].dir)?;
    let ours = compile_ours()?;
    let report = compare(&ours, &upstream);
    let versions = format!(
        "{SPIRE_SDK}@{}, {GO_PLUGIN}@{}",
        modules[SPIRE_SDK].version, modules[GO_PLUGIN].version
    );
    if !report.diffs.is_empty() {
        bail!(
            "{} differences between ours (proto/) and upstream ({versions}) after comparing {} elements.\n\
             Each line reads `<element>: <attribute> <ours> != <upstream>` or says on which side an element exists:\n  {}",
            report.diffs.len(),
            report.compared,
            report.diffs.join("\n  ")
        );
    }
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "wire identity: {} files, {} elements compared against {versions}, 0 differences",
            ours.file.len(),
            report.compared
        );
    }
    Ok(())
}

#[test]
fn comparator_reports_changed_field_number() -> Result<()> {
    let original = compile_ours()?;
    let mut mutated = original.clone();
    let request = message_mut(
        &mut mutated,
        "spire.plugin.agent.keymanager.v1",
        "SignDataRequest",
    );
    let key_id = request
        .field
        .iter_mut()
        .find(|f| f.name() == "key_id")
        .expect("SignDataRequest has a key_id field");
    key_id.number = Some(99);

    assert_eq!(
        compare(&mutated, &original).diffs,
        ["spire.plugin.agent.keymanager.v1.SignDataRequest.key_id: number 99 != 1"]
    );
    Ok(())
}

#[test]
fn comparator_reports_deleted_rpc() -> Result<()> {
    let original = compile_ours()?;
    let mut mutated = original.clone();
    let service = file_mut(&mut mutated, "spire.plugin.agent.keymanager.v1")
        .service
        .iter_mut()
        .find(|s| s.name() == "KeyManager")
        .expect("agent keymanager file declares the KeyManager service");
    let before = service.method.len();
    service.method.retain(|m| m.name() != "SignData");
    assert_eq!(
        service.method.len(),
        before - 1,
        "KeyManager has a SignData rpc"
    );

    assert_eq!(
        compare(&mutated, &original).diffs,
        ["spire.plugin.agent.keymanager.v1.KeyManager.SignData: rpc only upstream"]
    );
    Ok(())
}

fn file_mut<'a>(set: &'a mut FileDescriptorSet, package: &str) -> &'a mut FileDescriptorProto {
    set.file
        .iter_mut()
        .find(|f| f.package() == package)
        .unwrap_or_else(|| panic!("our protos declare package {package}"))
}

fn message_mut<'a>(
    set: &'a mut FileDescriptorSet,
    package: &str,
    name: &str,
) -> &'a mut DescriptorProto {
    file_mut(set, package)
        .message_type
        .iter_mut()
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("package {package} declares message {name}"))
}

// ---------------------------------------------------------------------------------------------
// Obtaining and compiling the two trees
// ---------------------------------------------------------------------------------------------

/// One object of the `go mod download -json` stream.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GoModule {
    path: String,
    #[serde(default)]
    version: String,
    dir: Option<PathBuf>,
    error: Option<String>,
}

/// A downloaded module: its resolved version and its (read-only) directory in the module cache.
#[derive(Debug)]
struct Downloaded {
    version: String,
    dir: PathBuf,
}

/// Downloads `modules` through the Go module proxy into the module cache, as pinned by `tests/go/go.mod`.
fn download_go_modules(modules: &[&str]) -> Result<BTreeMap<String, Downloaded>> {
    let go_dir = workspace_root().join("tests").join("go");
    let output = Command::new("go")
        .args(["mod", "download", "-json"])
        .args(modules)
        .current_dir(&go_dir)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!(
                "`go` is not on PATH: the wire-identity test needs the Go toolchain to fetch upstream protos"
            ),
            _ => anyhow::Error::new(e).context("running `go mod download`"),
        })?;

    let mut found = BTreeMap::new();
    let mut errors = Vec::new();
    for module in serde_json::Deserializer::from_slice(&output.stdout).into_iter::<GoModule>() {
        let module = module.context("parsing `go mod download -json` output")?;
        match (module.error, module.dir) {
            (Some(error), _) => errors.push(format!("{}: {error}", module.path)),
            (None, Some(dir)) => {
                found.insert(
                    module.path,
                    Downloaded {
                        version: module.version,
                        dir,
                    },
                );
            }
            (None, None) => errors.push(format!("{}: no Dir reported", module.path)),
        }
    }
    if !errors.is_empty() || !output.status.success() {
        bail!(
            "`go mod download` in {} failed ({}):\n  {}\n{}",
            go_dir.display(),
            output.status,
            errors.join("\n  "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    if let Some(missing) = modules.iter().find(|m| !found.contains_key(**m)) {
        bail!("`go mod download` did not report module {missing}");
    }
    Ok(found)
}

/// Compiles the upstream files, renamed to where ours keep them (go-plugin's under `plugin/`).
fn compile_upstream(spire_sdk: &Path, go_plugin: &Path) -> Result<FileDescriptorSet> {
    // Only `<sdk>/proto` is walked, so the SDK's test protos (`private/proto/test`) stay out.
    let internal = spire_sdk.join("internal").join("proto");
    let mut spire_files = proto_files(&spire_sdk.join("proto"))?;
    spire_files.push(internal.join(SPIRE_INIT));
    let mut set = compile(&[spire_sdk.join("proto"), internal], &spire_files)?;

    let plugin_dir = go_plugin.join("internal").join("plugin");
    let plugin_files: Vec<PathBuf> = GO_PLUGIN_FILES.iter().map(|f| plugin_dir.join(f)).collect();
    let mut plugin = compile(&[plugin_dir], &plugin_files)?;
    let relocate = |name: &mut String| {
        if GO_PLUGIN_FILES.contains(&name.as_str()) {
            *name = format!("{GO_PLUGIN_DIR_OURS}/{name}");
        }
    };
    for file in &mut plugin.file {
        relocate(file.name.get_or_insert_default());
        file.dependency.iter_mut().for_each(relocate);
    }
    set.file.append(&mut plugin.file);
    Ok(set)
}

/// Compiles every `.proto` under our `proto/`.
fn compile_ours() -> Result<FileDescriptorSet> {
    let root = workspace_root().join("proto");
    compile(std::slice::from_ref(&root), &proto_files(&root)?)
}

fn compile(includes: &[PathBuf], files: &[PathBuf]) -> Result<FileDescriptorSet> {
    let mut compiler = protox::Compiler::new(includes)
        .with_context(|| format!("setting up protox with includes {includes:?}"))?;
    compiler.include_source_info(false).include_imports(false);
    compiler
        .open_files(files)
        .with_context(|| format!("compiling protos with includes {includes:?}"))?;
    Ok(compiler.file_descriptor_set())
}

/// Every `.proto` file under `dir`, recursively, sorted.
fn proto_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry
                .with_context(|| format!("reading {}", dir.display()))?
                .path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "proto") {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

// ---------------------------------------------------------------------------------------------
// The comparator: one method per element kind
// ---------------------------------------------------------------------------------------------

/// Compares two descriptor sets; the first is "ours", the second "upstream".
fn compare(ours: &FileDescriptorSet, upstream: &FileDescriptorSet) -> Report {
    let mut report = Report::default();
    for (path, o, u) in report.matched("", "file", &ours.file, &upstream.file) {
        report.file(&path, o, u);
    }
    report
}

#[derive(Debug, Default)]
struct Report {
    diffs: Vec<String>,
    /// Element pairs present on both sides and compared.
    compared: usize,
}

impl Report {
    /// Records `<element>: <attribute> <ours> != <upstream>` when the two values differ.
    fn check<T: PartialEq + Debug>(
        &mut self,
        element: &str,
        attribute: &str,
        ours: T,
        upstream: T,
    ) {
        if ours != upstream {
            self.diffs
                .push(format!("{element}: {attribute} {ours:?} != {upstream:?}"));
        }
    }

    /// [`check`](Self::check) of the attribute `get` reads from both sides.
    fn attr<'e, E, T: PartialEq + Debug>(
        &mut self,
        element: &str,
        attribute: &str,
        ours: &'e E,
        upstream: &'e E,
        get: impl Fn(&'e E) -> T,
    ) {
        self.check(element, attribute, get(ours), get(upstream));
    }

    /// Pairs same-named elements of `scope`, recording those present on one side only.
    fn matched<'a, T: Named>(
        &mut self,
        scope: &str,
        kind: &str,
        ours: &'a [T],
        upstream: &'a [T],
    ) -> Vec<(String, &'a T, &'a T)> {
        let qualify = |n: &str| {
            if scope.is_empty() {
                n.to_owned()
            } else {
                format!("{scope}.{n}")
            }
        };
        let ours: BTreeMap<&str, &T> = ours.iter().map(|e| (e.key(), e)).collect();
        let upstream: BTreeMap<&str, &T> = upstream.iter().map(|e| (e.key(), e)).collect();
        for n in upstream.keys().filter(|n| !ours.contains_key(*n)) {
            self.diffs
                .push(format!("{}: {kind} only upstream", qualify(n)));
        }
        for n in ours.keys().filter(|n| !upstream.contains_key(*n)) {
            self.diffs
                .push(format!("{}: {kind} only in ours", qualify(n)));
        }
        let pairs: Vec<_> = ours
            .iter()
            .filter_map(|(n, o)| upstream.get(n).map(|u| (qualify(n), *o, *u)))
            .collect();
        self.compared += pairs.len();
        pairs
    }

    fn file(&mut self, path: &str, o: &FileDescriptorProto, u: &FileDescriptorProto) {
        self.attr(path, "package", o, u, |f| f.package());
        self.attr(path, "syntax", o, u, |f| f.syntax());
        self.attr(path, "imports", o, u, |f| {
            f.dependency.iter().collect::<BTreeSet<_>>()
        });
        self.attr(path, "other options", o, u, |f| {
            rest(&f.options, |x| x.go_package = None)
        });
        let package = o.package();
        for (name, a, b) in self.matched(package, "message", &o.message_type, &u.message_type) {
            self.message(&name, a, b);
        }
        for (name, a, b) in self.matched(package, "enum", &o.enum_type, &u.enum_type) {
            self.enumeration(&name, a, b);
        }
        for (name, a, b) in self.matched(package, "service", &o.service, &u.service) {
            self.service(&name, a, b);
        }
        for (name, a, b) in self.matched(package, "extension", &o.extension, &u.extension) {
            self.field(&name, (a, &[]), (b, &[]));
        }
    }

    fn message(&mut self, name: &str, o: &DescriptorProto, u: &DescriptorProto) {
        self.attr(name, "deprecated", o, u, |m| {
            opt(&m.options, MessageOptions::deprecated)
        });
        self.attr(name, "map_entry", o, u, |m| {
            opt(&m.options, MessageOptions::map_entry)
        });
        self.attr(name, "other options", o, u, |m| {
            rest(&m.options, |x| (x.deprecated, x.map_entry) = (None, None))
        });
        self.attr(name, "reserved ranges", o, u, |m| {
            ranges(m.reserved_range.iter().map(|r| (r.start, r.end)))
        });
        self.attr(name, "reserved names", o, u, |m| {
            m.reserved_name.iter().collect::<BTreeSet<_>>()
        });
        self.attr(name, "extension ranges", o, u, |m| {
            ranges(m.extension_range.iter().map(|r| (r.start, r.end)))
        });
        for (oneof, a, b) in self.matched(name, "oneof", &o.oneof_decl, &u.oneof_decl) {
            self.attr(&oneof, "options", a, b, |d| rest(&d.options, |_| {}));
        }
        for (field, a, b) in self.matched(name, "field", &o.field, &u.field) {
            self.field(&field, (a, &o.oneof_decl), (b, &u.oneof_decl));
        }
        for (field, a, b) in self.matched(name, "extension", &o.extension, &u.extension) {
            self.field(&field, (a, &[]), (b, &[]));
        }
        for (nested, a, b) in self.matched(name, "message", &o.nested_type, &u.nested_type) {
            self.message(&nested, a, b);
        }
        for (nested, a, b) in self.matched(name, "enum", &o.enum_type, &u.enum_type) {
            self.enumeration(&nested, a, b);
        }
    }

    /// A field (or extension) with its parent's oneofs, to compare oneof membership by name.
    fn field(
        &mut self,
        name: &str,
        (o, o_oneofs): (&FieldDescriptorProto, &[OneofDescriptorProto]),
        (u, u_oneofs): (&FieldDescriptorProto, &[OneofDescriptorProto]),
    ) {
        self.attr(name, "number", o, u, |f| f.number());
        self.attr(name, "label", o, u, |f| f.label());
        self.attr(name, "type", o, u, |f| f.r#type());
        self.attr(name, "type_name", o, u, |f| f.type_name.as_deref());
        self.attr(name, "extendee", o, u, |f| f.extendee.as_deref());
        self.check(
            name,
            "oneof",
            oneof_name(o, o_oneofs),
            oneof_name(u, u_oneofs),
        );
        self.attr(name, "json_name", o, u, |f| f.json_name.as_deref());
        self.attr(name, "proto3_optional", o, u, |f| f.proto3_optional());
        self.attr(name, "default_value", o, u, |f| f.default_value.as_deref());
        self.attr(name, "deprecated", o, u, |f| {
            opt(&f.options, FieldOptions::deprecated)
        });
        self.attr(name, "packed", o, u, |f| opt(&f.options, |x| x.packed));
        self.attr(name, "other options", o, u, |f| {
            rest(&f.options, |x| (x.deprecated, x.packed) = (None, None))
        });
    }

    fn enumeration(&mut self, name: &str, o: &EnumDescriptorProto, u: &EnumDescriptorProto) {
        self.attr(name, "deprecated", o, u, |e| {
            opt(&e.options, EnumOptions::deprecated)
        });
        self.attr(name, "allow_alias", o, u, |e| {
            opt(&e.options, EnumOptions::allow_alias)
        });
        self.attr(name, "other options", o, u, |e| {
            rest(&e.options, |x| (x.deprecated, x.allow_alias) = (None, None))
        });
        self.attr(name, "reserved ranges", o, u, |e| {
            ranges(e.reserved_range.iter().map(|r| (r.start, r.end)))
        });
        self.attr(name, "reserved names", o, u, |e| {
            e.reserved_name.iter().collect::<BTreeSet<_>>()
        });
        for (value, a, b) in self.matched(name, "enum value", &o.value, &u.value) {
            self.attr(&value, "number", a, b, |v| v.number());
            self.attr(&value, "deprecated", a, b, |v| {
                opt(&v.options, EnumValueOptions::deprecated)
            });
            self.attr(&value, "other options", a, b, |v| {
                rest(&v.options, |x| x.deprecated = None)
            });
        }
    }

    fn service(&mut self, name: &str, o: &ServiceDescriptorProto, u: &ServiceDescriptorProto) {
        self.attr(name, "deprecated", o, u, |s| {
            opt(&s.options, ServiceOptions::deprecated)
        });
        self.attr(name, "other options", o, u, |s| {
            rest(&s.options, |x| x.deprecated = None)
        });
        for (rpc, a, b) in self.matched(name, "rpc", &o.method, &u.method) {
            self.attr(&rpc, "input_type", a, b, |m| m.input_type());
            self.attr(&rpc, "output_type", a, b, |m| m.output_type());
            self.attr(&rpc, "client_streaming", a, b, |m| m.client_streaming());
            self.attr(&rpc, "server_streaming", a, b, |m| m.server_streaming());
            self.attr(&rpc, "deprecated", a, b, |m| {
                opt(&m.options, MethodOptions::deprecated)
            });
            self.attr(&rpc, "other options", a, b, |m| {
                rest(&m.options, |x| x.deprecated = None)
            });
        }
    }
}

/// Elements paired by name across the two sides.
trait Named {
    fn key(&self) -> &str;
}

macro_rules! named {
    ($($t:ty),*) => {
        $(impl Named for $t {
            fn key(&self) -> &str {
                self.name()
            }
        })*
    };
}

named!(
    FileDescriptorProto,
    DescriptorProto,
    FieldDescriptorProto,
    OneofDescriptorProto,
    EnumDescriptorProto,
    EnumValueDescriptorProto,
    ServiceDescriptorProto,
    MethodDescriptorProto
);

/// One option read from an element's (possibly absent) options.
fn opt<O, T: Default>(options: &Option<O>, get: impl Fn(&O) -> T) -> T {
    options.as_ref().map(get).unwrap_or_default()
}

/// The options not compared individually (`clear` resets those); absent and empty compare equal.
fn rest<O: Clone + Default>(options: &Option<O>, clear: impl Fn(&mut O)) -> O {
    let mut rest = options.clone().unwrap_or_default();
    clear(&mut rest);
    rest
}

/// Ranges as an order-independent set.
fn ranges(
    ranges: impl Iterator<Item = (Option<i32>, Option<i32>)>,
) -> BTreeSet<(Option<i32>, Option<i32>)> {
    ranges.collect()
}

fn oneof_name<'a>(
    field: &FieldDescriptorProto,
    oneofs: &'a [OneofDescriptorProto],
) -> Option<&'a str> {
    let index = usize::try_from(field.oneof_index?).ok()?;
    Some(oneofs.get(index).map_or("<out of range>", |o| o.name()))
}
