//! `--profile P`: a profile file, or the name of a bundled profile.

use std::{path::PathBuf, str::FromStr};

use minerguard::{profile::ProfileError, Profile, ValidProfile};

/// Where a command's profile comes from.
#[derive(Debug, Clone)]
pub enum ProfileArg {
    /// A YAML or JSON file.
    File(PathBuf),
    /// A profile bundled with minerguard (`default`, `container-strict`,
    /// `audit`), named where no file of that name exists.
    Bundled(String),
}

impl FromStr for ProfileArg {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // A file of that name wins, so `./default` can always be read.
        let path = PathBuf::from(s);
        let bundled = Profile::bundled_names().contains(&s);
        Ok(if bundled && !path.exists() {
            ProfileArg::Bundled(s.to_string())
        } else {
            ProfileArg::File(path)
        })
    }
}

impl std::fmt::Display for ProfileArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProfileArg::File(p) => write!(f, "{}", p.display()),
            ProfileArg::Bundled(n) => write!(f, "bundled:{n}"),
        }
    }
}

impl ProfileArg {
    /// Reads, parses and validates the profile, once: what is compiled
    /// and enforced from it is not validated again.
    pub fn load(&self) -> Result<ValidProfile<'static>, ProfileError> {
        match self {
            ProfileArg::File(p) => Profile::load(p),
            ProfileArg::Bundled(n) => {
                Ok(ValidProfile::bundled(n).expect("only bundled names parse as Bundled"))
            }
        }
    }

    /// A hint for a file that could not be read: the name may have been
    /// meant as a bundled profile.
    pub fn hint(&self) -> Option<String> {
        match self {
            ProfileArg::File(p) if !p.exists() && !p.to_string_lossy().contains('/') => {
                Some(format!(
                    "(bundled profiles: {})",
                    Profile::bundled_names().join(", ")
                ))
            }
            _ => None,
        }
    }

    /// [`ProfileArg::load`], with the hint added to a read error.
    pub fn load_for_command(&self) -> crate::CliResult<ValidProfile<'static>> {
        self.load().map_err(|e| match (&e, self.hint()) {
            (ProfileError::Io { .. }, Some(hint)) => format!("{e} {hint}").into(),
            _ => e.into(),
        })
    }
}
