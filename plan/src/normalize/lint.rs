//! BuildKit's Dockerfile lint rules (by their BuildKit names) and the `check` parser directive
//! that skips rules or turns warnings into errors:
//! `# check=skip=StageNameCasing,JSONArgsRecommended;error=true` (or `skip=all`).

use crate::diagnostic::{Diagnostic, Severity, Span};
use std::collections::BTreeSet;

/// A lint rule: BuildKit's name and a one-line description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// BuildKit's name, the diagnostic's code.
    pub name: &'static str,
    /// What it checks.
    pub description: &'static str,
}

macro_rules! rules {
    ($($ident:ident => $name:literal, $description:literal;)*) => {
        $(
            #[doc = $description]
            pub const $ident: Rule = Rule { name: $name, description: $description };
        )*
        /// Every rule we implement.
        pub const ALL_RULES: &[Rule] = &[$($ident),*];
    };
}

rules! {
    STAGE_NAME_CASING => "StageNameCasing", "Stage names should be lowercase";
    FROM_AS_CASING => "FromAsCasing", "The 'as' keyword should match the case of the 'from' keyword";
    CONSISTENT_INSTRUCTION_CASING => "ConsistentInstructionCasing", "All commands within the Dockerfile should use the same casing (either upper or lower)";
    JSON_ARGS_RECOMMENDED => "JSONArgsRecommended", "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals";
    MAINTAINER_DEPRECATED => "MaintainerDeprecated", "The MAINTAINER instruction is deprecated, use a label instead to define an image author";
    UNDEFINED_VAR => "UndefinedVar", "Variables should be defined before their use";
    UNDEFINED_ARG_IN_FROM => "UndefinedArgInFrom", "FROM command must use declared ARGs";
    SECRETS_USED_IN_ARG_OR_ENV => "SecretsUsedInArgOrEnv", "Sensitive data should not be used in the ARG or ENV commands";
    WORKDIR_RELATIVE_PATH => "WorkdirRelativePath", "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes";
    NO_EMPTY_CONTINUATION => "NoEmptyContinuation", "Empty continuation lines will become errors in a future release";
    MULTIPLE_INSTRUCTIONS_DISALLOWED => "MultipleInstructionsDisallowed", "Multiple instructions of the same type should not be used in the same stage";
    LEGACY_KEY_VALUE_FORMAT => "LegacyKeyValueFormat", "Legacy key/value format with whitespace separator should not be used";
    REDUNDANT_TARGET_PLATFORM => "RedundantTargetPlatform", "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior";
    RESERVED_STAGE_NAME => "ReservedStageName", "Reserved words should not be used as stage names";
    EXPOSE_PROTO_CASING => "ExposeProtoCasing", "Protocol in EXPOSE instruction should be lowercase";
    EXPOSE_INVALID_FORMAT => "ExposeInvalidFormat", "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release";
    INVALID_DEFAULT_ARG_IN_FROM => "InvalidDefaultArgInFrom", "Default value for global ARG results in an empty or invalid base image name";
    FROM_PLATFORM_FLAG_CONST_DISALLOWED => "FromPlatformFlagConstDisallowed", "FROM --platform flag should not use a constant value";
}

/// The `check` directive's settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    /// `skip=all`.
    pub skip_all: bool,
    /// Rules named in `skip=`.
    pub skip: BTreeSet<String>,
    /// `error=true`: lint warnings fail the build.
    pub error: bool,
}

impl CheckConfig {
    /// Parses the directive's value, as BuildKit's `linter.ParseLintOptions` does.
    ///
    /// ```
    /// use nullspace_plan::normalize::lint::CheckConfig;
    /// let c = CheckConfig::parse("skip=StageNameCasing,FromAsCasing;error=true").unwrap();
    /// assert!(c.error && c.skip.contains("FromAsCasing"));
    /// assert!(CheckConfig::parse("skip=all").unwrap().skip_all);
    /// assert!(CheckConfig::parse("error=maybe").is_err());
    /// ```
    pub fn parse(value: &str) -> Result<Self, String> {
        let mut config = CheckConfig::default();
        let value = value.trim();
        if value.is_empty() {
            return Ok(config);
        }
        for part in value.split(';') {
            let (key, val) =
                part.split_once('=').ok_or_else(|| format!("invalid check option `{part}`: expected key=value"))?;
            match key.trim() {
                "skip" => {
                    for rule in val.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                        if rule == "all" {
                            config.skip_all = true;
                        } else {
                            config.skip.insert(rule.to_string());
                        }
                    }
                }
                "error" => {
                    config.error = parse_go_bool(val.trim())
                        .ok_or_else(|| format!("invalid check option `error={val}`: expected a boolean"))?;
                }
                // Accepted and ignored: we implement no experimental rules.
                "experimental" => {}
                other => return Err(format!("invalid check option `{other}`")),
            }
        }
        Ok(config)
    }
}

fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Collects lint findings, dropping skipped rules and raising them to errors under `error=true`.
#[derive(Debug, Default)]
pub struct Linter {
    config: CheckConfig,
    findings: Vec<Diagnostic>,
}

impl Linter {
    /// A linter with the directive's settings.
    pub fn new(config: CheckConfig) -> Self {
        Self { config, findings: Vec::new() }
    }

    /// Reports `rule` at `span` unless the `check` directive skips it.
    pub fn report(&mut self, rule: Rule, message: impl Into<String>, span: Span) {
        if self.config.skip_all || self.config.skip.contains(rule.name) {
            return;
        }
        let mut d = Diagnostic::warning(rule.name, message).at(span).hint(rule.description);
        if self.config.error {
            d.severity = Severity::Error;
        }
        self.findings.push(d);
    }

    /// The findings, in the order reported.
    pub fn into_findings(self) -> Vec<Diagnostic> {
        self.findings
    }
}
