//! `minerguard seccomp`: a profile's seccomp filter, exported.

use std::{
    io::{self, Write},
    process::ExitCode,
};

use minerguard::{SeccompFilter, SeccompPolicy};

use crate::{profile_arg::ProfileArg, CliResult};

/// Prints the filter of `profile` in `format` (`oci`, `bpf` or `pfc`).
pub fn print(profile: &ProfileArg, format: &str) -> CliResult<ExitCode> {
    let profile = profile.load_for_command()?;
    let Some(policy) = SeccompPolicy::from_valid(&profile)? else {
        return Err(format!("profile `{}` has no seccomp rule", profile.name).into());
    };
    let mut out = io::stdout().lock();
    match format {
        "oci" => {
            let json = minerguard::seccomp::oci::to_oci(&policy)?;
            writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
        }
        "bpf" => out.write_all(&SeccompFilter::new(&policy)?.to_bpf()?)?,
        _ => out.write_all(SeccompFilter::new(&policy)?.to_pfc()?.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}
