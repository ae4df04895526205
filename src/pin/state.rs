//! An instance's state file: which scopes it enforces, with which profile
//! under which policy id, so that a restarted enforcer can adopt them (and
//! name the rules of events written while nobody read them).

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::{io_err, PinError, ScopeStatus};

/// What an instance recorded of itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceState {
    /// The process that wrote it last.
    pub pid: u32,
    /// That process's start time (clock ticks after boot, `/proc/PID/stat`
    /// field 22): a pid reused by another process is not taken for it.
    #[serde(default)]
    pub start_time: u64,
    /// `lsm` or `cgroup`.
    pub backend: String,
    /// Its scopes.
    pub scopes: Vec<ScopeRecord>,
}

/// One scope of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScopeRecord {
    /// The cgroup path (`None`: the host).
    pub cgroup: Option<PathBuf>,
    /// The id of the cgroup it enforces on.
    pub cgroup_id: u64,
    /// That cgroup's depth (0: the root).
    #[serde(default)]
    pub level: u32,
    /// The profile's name.
    pub profile_name: String,
    /// The profile, to name the rules of events and compare on adoption.
    pub profile: serde_json::Value,
    /// Its policy id in the maps.
    pub policy_id: u32,
    /// A digest of the policy's map entries: equal means the maps hold
    /// exactly what the profile compiles to.
    pub digest: String,
    /// When it was applied or last changed, Unix seconds.
    pub since: u64,
}

impl ScopeRecord {
    /// `host` or the cgroup path.
    pub fn scope_name(&self) -> String {
        match &self.cgroup {
            None => "host".into(),
            Some(p) => p.display().to_string(),
        }
    }

    /// What `status` shows of it.
    pub(crate) fn status(&self) -> ScopeStatus {
        use std::os::unix::fs::MetadataExt;
        let present = match &self.cgroup {
            None => true,
            Some(p) => fs::metadata(p).is_ok_and(|m| m.ino() == self.cgroup_id),
        };
        ScopeStatus {
            scope: self.scope_name(),
            cgroup_id: self.cgroup_id,
            present,
            profile: self.profile_name.clone(),
            policy_id: self.policy_id,
            since: self.since,
        }
    }
}

fn file_in(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

impl InstanceState {
    /// The state in `dir`, if any.
    pub(crate) fn load(dir: &Path) -> Result<Option<Self>, PinError> {
        let path = file_in(dir);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| PinError::State {
                    path,
                    problem: format!("not a valid state file ({e}); `minerguard remove` clears it"),
                }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading", &path)(e)),
        }
    }

    /// Writes the state into `dir` atomically (a reader sees the old or
    /// the new file, never half of one).
    pub(crate) fn save(&self, dir: &Path) -> Result<(), PinError> {
        let path = file_in(dir);
        let tmp = dir.join("state.json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(|e| PinError::State {
            path: path.clone(),
            problem: e.to_string(),
        })?;
        fs::write(&tmp, text).map_err(io_err("writing", &tmp))?;
        fs::rename(&tmp, &path).map_err(io_err("writing", &path))
    }

    /// Removes the state file.
    pub(crate) fn remove(dir: &Path) {
        let _ = fs::remove_file(file_in(dir));
    }
}

/// The start time of process `pid` (`/proc/PID/stat` field 22), if it runs.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count
    // from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Now, in Unix seconds.
pub(crate) fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_running_process_has_a_start_time_and_a_gone_one_none() {
        let me = super::start_time(std::process::id()).expect("this process runs");
        assert!(me > 0);
        assert_eq!(super::start_time(std::process::id()), Some(me));
        assert_eq!(super::start_time(u32::MAX), None);
    }
}
