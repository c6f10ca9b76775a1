//! The `mooncake_master` command line in gflags style (CONTRACT §1).
//!
//! Hand-written rather than clap: gflags lets a boolean stand bare (`--enable_ha`) or
//! take `=true|false`, accepts one or two dashes and `--noname` for false, and the
//! `--config_path` file must be applied *under* the flags, with the same validation
//! and the same error messages. A 60-line tokenizer over one table (`spec`) does all
//! of that and keeps `--help`, the file and the flags in agreement.

mod file;
pub mod spec;

use crate::config::MasterConfig;
use spec::{Kind, FLAGS};
use std::collections::HashSet;
use std::fmt;

/// A command-line problem; the message names the flag at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagError(pub String);

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FlagError {}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    Run(Box<Parsed>),
    Help(String),
    Version,
}

/// A validated configuration plus what the operator should be warned about.
#[derive(Debug)]
pub struct Parsed {
    pub config: MasterConfig,
    /// Reference-only flags that were accepted but have no effect here.
    pub ignored: Vec<String>,
    /// `--rpc_thread_num` (or the reference's older `--max_threads`): threads of the
    /// process's async runtime, which serves gRPC and HTTP. `None` = the default.
    pub rpc_threads: Option<usize>,
}

/// One `name[=value]` setting from the command line or the file.
struct Setting {
    name: String,
    value: String,
}

/// Parses the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<Command, FlagError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut args = args.into_iter().map(Into::into).peekable();
    let mut settings = Vec::new();
    while let Some(arg) = args.next() {
        let body = match arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) {
            Some(b) if !b.is_empty() => b,
            _ => {
                return Err(FlagError(format!(
                    "unexpected argument {arg:?} (flags look like --name=value; see --help)"
                )))
            }
        };
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        match name {
            "help" | "h" | "helpfull" => return Ok(Command::Help(help())),
            "version" => return Ok(Command::Version),
            _ => {}
        }
        let (canonical, kind, negated) = resolve(name)?;
        let value = match (kind, inline) {
            (_, Some(_)) if negated => {
                return Err(FlagError(format!(
                    "flag --{name} takes no value (use --{canonical}=false)"
                )))
            }
            (_, Some(v)) => v,
            (Kind::Bool, None) if negated => "false".into(),
            (Kind::Bool, None) => match args.peek().map(|s| s.to_ascii_lowercase()) {
                // `--enable_ha true` reads naturally; gflags would leave `true` as a stray word.
                Some(w) if w == "true" || w == "false" => args.next().unwrap_or_default(),
                _ => "true".into(),
            },
            (Kind::Value, None) => args
                .next()
                .ok_or_else(|| FlagError(format!("flag --{name} needs a value")))?,
        };
        settings.push(Setting {
            name: canonical,
            value,
        });
    }
    build(settings).map(|p| Command::Run(Box::new(p)))
}

/// The canonical name and kind for a flag as typed, and whether it was the gflags
/// negation `--noname` of a boolean. Reference-only flags resolve to themselves.
fn resolve(name: &str) -> Result<(String, Kind, bool), FlagError> {
    if let Some(f) = spec::lookup(name) {
        return Ok((f.name.to_string(), f.kind, false));
    }
    if let Some(k) = spec::compat(name) {
        return Ok((name.to_string(), k, false));
    }
    if let Some(rest) = name.strip_prefix("no") {
        match spec::lookup(rest) {
            Some(f) if f.kind == Kind::Bool => return Ok((f.name.to_string(), Kind::Bool, true)),
            _ => {}
        }
        if spec::compat(rest) == Some(Kind::Bool) {
            return Ok((rest.to_string(), Kind::Bool, true));
        }
    }
    Err(FlagError(match closest_flag(name) {
        Some(known) => format!("unknown flag --{name}; did you mean --{known}? (see --help)"),
        None => format!("unknown flag --{name} (see --help)"),
    }))
}

/// The known flag nearest to a mistyped one, when it is near enough to be the likely
/// intent: at most two edits, and fewer than a third of the name.
fn closest_flag(name: &str) -> Option<&'static str> {
    let names = spec::FLAGS
        .iter()
        .map(|f| f.name)
        .chain(spec::COMPAT_FLAGS.iter().map(|(n, _)| *n));
    let limit = (name.chars().count() / 3).clamp(1, 2);
    names
        .map(|n| (edit_distance(name, n), n))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

/// Levenshtein distance (insertions, deletions, substitutions; flag names are short).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Applies the file (if any) then the command line over the defaults, and validates.
fn build(cli: Vec<Setting>) -> Result<Parsed, FlagError> {
    let mut all = Vec::new();
    if let Some(path) = cli.iter().rev().find(|s| s.name == "config_path") {
        let path = path.value.trim();
        if !path.is_empty() {
            for (key, value) in file::read_entries(path).map_err(FlagError)? {
                let name = match resolve(&key) {
                    Ok((name, _, false)) => name,
                    _ => {
                        return Err(FlagError(format!(
                            "--config_path {path:?}: unknown key {key:?}"
                        )))
                    }
                };
                all.push(Setting { name, value });
            }
        }
    }
    all.extend(cli);

    let mut config = MasterConfig::default();
    let mut explicit = HashSet::new();
    let mut ignored = Vec::new();
    let (mut rpc_threads, mut max_threads) = (None, None);
    for s in &all {
        match (spec::lookup(&s.name), s.name.as_str()) {
            (Some(f), _) => (f.apply)(&mut config, &s.value).map_err(FlagError)?,
            (None, "rpc_thread_num") => rpc_threads = Some(threads(&s.name, &s.value)?),
            (None, "max_threads") => max_threads = Some(threads(&s.name, &s.value)?),
            (None, _) => ignored.push(s.name.clone()),
        }
        explicit.insert(s.name.as_str());
    }
    // The seed's manifest gives the metadata server's address without the enable flag
    // and expects it to run.
    if explicit.contains("http_metadata_server_host")
        || explicit.contains("http_metadata_server_port")
    {
        config.enable_http_metadata_server = true;
    }
    config.validate().map_err(FlagError)?;
    ignored.dedup();
    Ok(Parsed {
        config,
        ignored,
        rpc_threads: rpc_threads.or(max_threads),
    })
}

/// A thread count: 1 to 1024.
fn threads(flag: &str, v: &str) -> Result<usize, FlagError> {
    match v.trim().parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err(FlagError(spec::bad(
            flag,
            v,
            "expected a thread count 1-1024",
        ))),
    }
}

/// `--help`: every flag with its default.
pub fn help() -> String {
    let mut out = String::from(
        "mooncake_master: the Mooncake Store master\n\n\
         Usage: mooncake_master [--flag=value | --flag value | --bool_flag] ...\n\n\
         Flags:\n",
    );
    for f in FLAGS {
        let alias: String = f.aliases.iter().map(|a| format!(", --{a}")).collect();
        let shape = if f.kind == Kind::Bool { "" } else { "=<value>" };
        out.push_str(&format!(
            "  --{}{shape}{alias}\n      {} (default: {:?})\n",
            f.name, f.help, f.default
        ));
    }
    out.push_str(
        "  --rpc_thread_num=<value>, --max_threads\n      threads serving gRPC and HTTP (default: the cores, at most 4)\n",
    );
    out.push_str("  --help\n      print this list\n  --version\n      print the version\n");
    out.push_str("\nAccepted for compatibility with the C++ master, without effect: ");
    let names: Vec<String> = spec::COMPAT_FLAGS
        .iter()
        .filter(|(n, _)| !matches!(*n, "rpc_thread_num" | "max_threads"))
        .map(|(n, _)| format!("--{n}"))
        .collect();
    out.push_str(&names.join(", "));
    out.push('\n');
    out
}

#[cfg(test)]
mod tests;
