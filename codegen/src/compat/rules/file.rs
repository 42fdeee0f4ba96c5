//! File rules: a file's deletion, its package and syntax, and the options that change the code
//! other generators (Go, Java, C++, …) produce from it.

use prost_types::FileOptions;

use crate::compat::index::path;
use crate::compat::pairs::{FilePair, Out, Sides, missing};

pub(crate) fn file_no_delete(sides: &Sides<'_>, out: &mut Out) {
    for (name, file) in missing(&sides.previous.files, &sides.current.files) {
        out.push(
            file.at_file(),
            format!("Previously present file \"{name}\" was deleted."),
        );
    }
}

pub(crate) fn file_same_package(pair: &FilePair<'_>, out: &mut Out) {
    let (previous, current) = (pair.previous.package(), pair.current.package());
    if previous != current {
        let mut at = pair.current.at(&[path::FILE_PACKAGE]);
        // The package that broke is the one plugins were built against.
        at.package = previous.to_owned();
        out.push(
            at,
            format!("File package changed from \"{previous}\" to \"{current}\"."),
        );
    }
}

pub(crate) fn file_same_syntax(pair: &FilePair<'_>, out: &mut Out) {
    let (previous, current) = (pair.previous.syntax().name(), pair.current.syntax().name());
    if previous != current {
        out.push(
            pair.current.at(&[path::FILE_SYNTAX]),
            format!("File syntax changed from \"{previous}\" to \"{current}\"."),
        );
    }
}

/// Reports a change of the file option `name` (field `number` of `FileOptions`).
fn same_option(
    pair: &FilePair<'_>,
    out: &mut Out,
    name: &str,
    number: i32,
    value: fn(&FileOptions) -> String,
) {
    let unset = FileOptions::default();
    let previous = value(pair.previous.desc.options.as_ref().unwrap_or(&unset));
    let current = value(pair.current.desc.options.as_ref().unwrap_or(&unset));
    if previous != current {
        out.push(
            pair.current.at(&[path::FILE_OPTIONS, number]),
            format!("File option \"{name}\" changed from \"{previous}\" to \"{current}\"."),
        );
    }
}

pub(crate) fn file_same_cc_enable_arenas(pair: &FilePair<'_>, out: &mut Out) {
    same_option(pair, out, "cc_enable_arenas", 31, |o| {
        o.cc_enable_arenas().to_string()
    });
}

pub(crate) fn file_same_cc_generic_services(pair: &FilePair<'_>, out: &mut Out) {
    same_option(pair, out, "cc_generic_services", 16, |o| {
        o.cc_generic_services().to_string()
    });
}

pub(crate) fn file_same_csharp_namespace(pair: &FilePair<'_>, out: &mut Out) {
    same_option(pair, out, "csharp_namespace", 37, |o| {
        o.csharp_namespace().to_owned()
    });
}

pub(crate) fn file_same_go_package(pair: &FilePair<'_>, out: &mut Out) {
    same_option(pair, out, "go_package", 11, |o| o.go_package().to_owned());
}

pub(crate) fn file_same_java_generic_services(pair: &FilePair<'_>, out: &mut Out) {
    same_option(pair, out, "java_generic_services", 17, |o| {
        o.java_generic_services().to_string()
    });
}

pub(crate) fn file_same_java_multiple_files(pair: &FilePair<'_>, out: &mut Out) {
    same_option(pair, out, "java_multiple_files", 10, |o| {
        o.java_multiple_files().to_string()
    });
}

pub(crate) fn file_same_java_outer_classname(pair: &FilePair<'_>, out: &mut Out) {
    same_option(pair, out, "java_outer_classname", 8, |o| {
        o.java_outer_classname().to_owned()
    });
}

pub(crate) fn file_same_java_package(pair: &FilePair<'_>, out: &mut Out) {
    same_option(pair, out, "java_package", 1, |o| {
        o.java_package().to_owned()
    });
}

pub(crate) fn file_same_objc_class_prefix(pair: &FilePair<'_>, out: &mut Out) {
    same_option(pair, out, "objc_class_prefix", 36, |o| {
        o.objc_class_prefix().to_owned()
    });
}

pub(crate) fn file_same_optimize_for(pair: &FilePair<'_>, out: &mut Out) {
    same_option(pair, out, "optimize_for", 9, |o| {
        o.optimize_for().as_str_name().to_owned()
    });
}

pub(crate) fn file_same_php_class_prefix(pair: &FilePair<'_>, out: &mut Out) {
    same_option(pair, out, "php_class_prefix", 40, |o| {
        o.php_class_prefix().to_owned()
    });
}

pub(crate) fn file_same_php_metadata_namespace(pair: &FilePair<'_>, out: &mut Out) {
    same_option(pair, out, "php_metadata_namespace", 44, |o| {
        o.php_metadata_namespace().to_owned()
    });
}

pub(crate) fn file_same_php_namespace(pair: &FilePair<'_>, out: &mut Out) {
    same_option(pair, out, "php_namespace", 41, |o| {
        o.php_namespace().to_owned()
    });
}

pub(crate) fn file_same_py_generic_services(pair: &FilePair<'_>, out: &mut Out) {
    same_option(pair, out, "py_generic_services", 18, |o| {
        o.py_generic_services().to_string()
    });
}

pub(crate) fn file_same_ruby_package(pair: &FilePair<'_>, out: &mut Out) {
    same_option(pair, out, "ruby_package", 45, |o| {
        o.ruby_package().to_owned()
    });
}

pub(crate) fn file_same_swift_prefix(pair: &FilePair<'_>, out: &mut Out) {
    same_option(pair, out, "swift_prefix", 39, |o| {
        o.swift_prefix().to_owned()
    });
}
