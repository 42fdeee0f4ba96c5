//! `cargo xtask plugin-check`: the command line over `spire_plugin_sdk::spire::check` — loads a
//! SPIRE plugin binary as SPIRE would and prints the report. Exit status 0 when every step
//! passes, 1 when one fails, 2 on usage errors (clap's, or an unreadable `--config`).

use std::path::Path;

use anyhow::Context as _;
use spire_plugin_sdk::spire::check::{self, CheckOptions};

use crate::flags::{CompatFormat, PluginCheck};

/// Runs the check; exits the process with 1 when a step fails and 2 on usage errors.
pub(crate) fn run(flags: &PluginCheck, invoked_from: &Path) -> anyhow::Result<()> {
    let options = match options(flags, invoked_from) {
        Ok(options) => options,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(check::run(&options));
    drop(runtime);
    match flags.format {
        CompatFormat::Text => print!("{}", report.to_text()),
        CompatFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report.to_json()).context("printing the report")?
        ),
    }
    if !report.passed() {
        std::process::exit(1);
    }
    Ok(())
}

/// The check's options from the flags; paths relative to `invoked_from`.
fn options(flags: &PluginCheck, invoked_from: &Path) -> anyhow::Result<CheckOptions> {
    let mut options = CheckOptions::new(flags.plugin_type, invoked_from.join(&flags.cmd));
    options.args.clone_from(&flags.args);
    options.checksum.clone_from(&flags.checksum);
    options.trust_domain.clone_from(&flags.trust_domain);
    options.timeout = std::time::Duration::from_secs(flags.timeout.max(1));
    if let Some(path) = &flags.config {
        let path = invoked_from.join(path);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading --config {}", path.display()))?;
        options.config = Some(text);
    }
    Ok(options)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::flags::{Task, Xtask};

    fn parse(args: &[&str]) -> Result<PluginCheck, clap::Error> {
        let mut argv = vec!["xtask", "plugin-check"];
        argv.extend_from_slice(args);
        match Xtask::try_parse_from(argv)?.task {
            Task::PluginCheck(flags) => Ok(flags),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn parses_every_flag() {
        let flags = parse(&[
            "--type",
            "server/NodeAttestor",
            "--cmd",
            "bin/plugin",
            "--config",
            "c.hcl",
            "--checksum",
            "ab",
            "--trust-domain",
            "td.test",
            "--format",
            "json",
            "--args",
            "-type=server-nodeattestor",
            "-no-config",
        ])
        .unwrap();
        assert_eq!(flags.plugin_type.to_string(), "server/NodeAttestor");
        assert_eq!(flags.args, ["-type=server-nodeattestor", "-no-config"]);
        assert_eq!(flags.format, CompatFormat::Json);
        assert_eq!(flags.trust_domain, "td.test");
        let options = options(&flags, Path::new("/work")).unwrap_err();
        assert!(format!("{options:#}").contains("reading --config /work/c.hcl"));
    }

    #[test]
    fn usage_errors_exit_2() {
        for args in [
            &["--cmd", "x"][..],
            &["--type", "KeyManager", "--cmd", "x"],
            &["--type", "agent/KeyManager"],
            &[
                "--type",
                "agent/KeyManager",
                "--cmd",
                "x",
                "--format",
                "xml",
            ],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }

    #[test]
    fn relative_paths_follow_the_invocation_directory() {
        let flags = parse(&["--type", "agent/KeyManager", "--cmd", "p"]).unwrap();
        let options = options(&flags, Path::new("/somewhere")).unwrap();
        assert_eq!(options.cmd, Path::new("/somewhere/p"));
        assert_eq!(options.trust_domain, "example.org");
        assert!(options.config.is_none() && options.checksum.is_none());
    }
}
