//! Secrets in the configuration are written `env:NAME` (read from the
//! environment) or given as the value itself.

use std::fmt;

/// A secret reference that could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretError {
    pub variable: String,
}

impl fmt::Display for SecretError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "environment variable {} is not set or empty",
            self.variable
        )
    }
}

impl std::error::Error for SecretError {}

/// Resolves `env:NAME` from `lookup`; any other text is the secret itself.
pub fn resolve_secret(
    reference: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, SecretError> {
    match reference.strip_prefix("env:") {
        Some(variable) => lookup(variable)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| SecretError {
                variable: variable.to_owned(),
            }),
        None => Ok(reference.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_references_are_looked_up() {
        let lookup = |name: &str| (name == "K").then(|| "secret".to_owned());
        assert_eq!(resolve_secret("env:K", lookup).unwrap(), "secret");
        assert_eq!(resolve_secret("plain", lookup).unwrap(), "plain");
        assert_eq!(
            resolve_secret("env:MISSING", lookup).unwrap_err().variable,
            "MISSING"
        );
    }
}
