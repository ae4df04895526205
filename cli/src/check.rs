//! `minerguard check`: validate profiles, every problem at once.

use std::process::ExitCode;

use minerguard::{profile::ProfileError, KernelPolicy, SeccompPolicy, ValidProfile};
use serde_json::{json, Value};

use crate::{profile_arg::ProfileArg, EXIT_FINDINGS, EXIT_USAGE};

/// One profile's outcome.
enum Outcome {
    /// Valid: what it enforces.
    Clean(ValidProfile<'static>),
    /// Invalid: every problem.
    Problems(ProfileError),
    /// Not readable at all (missing, not a regular file, too large).
    Unreadable(String),
}

fn check_one(arg: &ProfileArg) -> Outcome {
    let checked = arg.load().and_then(|p| {
        KernelPolicy::from_valid(&p)?;
        SeccompPolicy::from_valid(&p)?;
        Ok(p)
    });
    match checked {
        Ok(p) => Outcome::Clean(p),
        Err(
            e @ (ProfileError::Io { .. }
            | ProfileError::NotRegularFile { .. }
            | ProfileError::TooLarge { .. }),
        ) => Outcome::Unreadable(match arg.hint() {
            Some(hint) => format!("{e} {hint}"),
            None => e.to_string(),
        }),
        Err(e) => Outcome::Problems(e),
    }
}

/// Checks each profile; prints a summary line per clean one and every
/// diagnostic of the others (or, with `json`, one JSON document). Exit 0
/// when all are clean, 1 when any has problems, 2 when any cannot be read.
pub fn check(args: &[ProfileArg], json: bool) -> ExitCode {
    let outcomes: Vec<(&ProfileArg, Outcome)> = args.iter().map(|a| (a, check_one(a))).collect();
    let code = outcomes
        .iter()
        .map(|(_, o)| match o {
            Outcome::Clean(_) => 0,
            Outcome::Problems(_) => EXIT_FINDINGS,
            Outcome::Unreadable(_) => EXIT_USAGE,
        })
        .max()
        .unwrap_or(0);
    if json {
        let files: Vec<Value> = outcomes.iter().map(|(a, o)| to_json(a, o)).collect();
        let doc = json!({ "ok": code == 0, "profiles": files });
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("a JSON value serializes")
        );
    } else {
        for (arg, outcome) in &outcomes {
            match outcome {
                Outcome::Clean(p) => println!("{arg}: ok: {}", p.summary()),
                Outcome::Problems(e) => eprintln!("{e}"),
                Outcome::Unreadable(e) => eprintln!("{e}"),
            }
        }
    }
    ExitCode::from(code)
}

fn to_json(arg: &ProfileArg, outcome: &Outcome) -> Value {
    let file = arg.to_string();
    match outcome {
        Outcome::Clean(p) => json!({
            "file": file, "ok": true, "name": p.name, "rules": p.rules.len(), "diagnostics": [],
        }),
        Outcome::Problems(e) => json!({
            "file": file,
            "ok": false,
            // Each names its own file: a problem may be in a base profile.
            "diagnostics": e.diagnostics(),
        }),
        Outcome::Unreadable(message) => json!({
            "file": file, "ok": false, "error": message, "diagnostics": [],
        }),
    }
}
