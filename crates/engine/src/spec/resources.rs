//! Cluster settings of a pipeline file: `settings.slurm` and each stage's `resources`.
//!
//! They only say *where and with what* an instance runs, never *what* it computes, so they are
//! not part of any key (a stage's `device` parameter is, where it has one): moving a pipeline from a laptop to a cluster keeps its cache. The values
//! are checked here (with file:line:col) so that a typo is an error before anything is submitted,
//! not an `sbatch` rejection halfway through a run.

use serde::{Deserialize, Deserializer};

use super::{Diagnostic, SourceFile};

pub(super) const SLURM_KEYS: &str = "partition, account, extra_args, max_jobs";
pub(super) const RESOURCE_KEYS: &str = "cpus, mem, time, gpus, partition";

/// `settings.slurm`: how the SLURM executor submits.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmSettings {
    /// Default partition (`sbatch --partition`); a stage's `resources.partition` wins.
    pub partition: Option<String>,
    /// `sbatch --account`.
    pub account: Option<String>,
    /// Passed to every `sbatch` as they are, e.g. `["--qos=short"]`.
    #[serde(default)]
    pub extra_args: Vec<String>,
    /// At most this many instances queued or running on the cluster at once.
    pub max_jobs: Option<usize>,
}

/// A stage's `resources`: what one of its instances asks the cluster for.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// `--cpus-per-task`; default: the instance's thread budget.
    pub cpus: Option<u32>,
    /// `--mem`: `4G`, `500M`, or a number of megabytes.
    #[serde(default, deserialize_with = "scalar_text")]
    pub mem: Option<String>,
    /// `--time`: minutes, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM` or `D-HH:MM:SS`.
    #[serde(default, deserialize_with = "scalar_text")]
    pub time: Option<String>,
    /// GPUs per instance: `#SBATCH --gres=gpu:N` on SLURM; locally, that many GPUs of its own
    /// while it runs (`device: cuda` implies 1).
    pub gpus: Option<u32>,
    /// `--partition`, overriding `settings.slurm.partition`.
    pub partition: Option<String>,
}

/// Accepts `mem: 4096` and `mem: 4G` alike (YAML reads the first as a number).
fn scalar_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        Int(u64),
        Text(String),
    }
    Ok(
        Option::<Scalar>::deserialize(deserializer)?.map(|s| match s {
            Scalar::Int(n) => n.to_string(),
            Scalar::Text(t) => t,
        }),
    )
}

/// Problems in `settings` (`jobs`, `slurm`) and in every stage's `resources`, each at its
/// position.
pub fn check_cluster_settings(source: &SourceFile) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let spec = &source.spec;
    if spec.settings.jobs == Some(0) {
        problems.push(source.at_value(
            "settings.jobs",
            "`settings.jobs` must be at least 1".into(),
            Some("it is the default of `--jobs` (parallel thread slots); remove it to use one per core".into()),
        ));
    }
    if let Some(slurm) = &spec.settings.slurm {
        if slurm.max_jobs == Some(0) {
            problems.push(source.at_value(
                "settings.slurm.max_jobs",
                "`max_jobs` must be at least 1".into(),
                Some("it caps how many instances are queued or running at once".into()),
            ));
        }
        for (i, arg) in slurm.extra_args.iter().enumerate() {
            if !arg.starts_with('-') {
                problems.push(source.at_value(
                    &format!("settings.slurm.extra_args.{i}"),
                    format!("`{arg}` is not an sbatch option"),
                    Some("write each option whole, e.g. `--qos=short`".into()),
                ));
            }
        }
        check_name(
            source,
            "settings.slurm.partition",
            slurm.partition.as_deref(),
            &mut problems,
        );
        check_name(
            source,
            "settings.slurm.account",
            slurm.account.as_deref(),
            &mut problems,
        );
    }
    for (stage, spec) in &spec.stages {
        let Some(resources) = &spec.resources else {
            continue;
        };
        let base = format!("stages.{stage}.resources");
        if resources.cpus == Some(0) {
            problems.push(source.at_value(
                &format!("{base}.cpus"),
                format!("stage `{stage}`: `cpus` must be at least 1"),
                None,
            ));
        }
        if let Some(mem) = &resources.mem {
            if !valid_memory(mem) {
                problems.push(source.at_value(
                    &format!("{base}.mem"),
                    format!("stage `{stage}`: `{mem}` is not a memory size"),
                    Some("write a number with an optional unit K, M, G or T, e.g. `4G` or `500M` (no unit: megabytes)".into()),
                ));
            }
        }
        if let Some(time) = &resources.time {
            if !valid_time(time) {
                problems.push(source.at_value(
                    &format!("{base}.time"),
                    format!("stage `{stage}`: `{time}` is not a SLURM time limit"),
                    Some("write minutes (`30`), `HH:MM:SS` (`02:00:00`) or `D-HH:MM` (`1-12:00`)".into()),
                ));
            }
        }
        check_name(
            source,
            &format!("{base}.partition"),
            resources.partition.as_deref(),
            &mut problems,
        );
    }
    problems
}

fn check_name(source: &SourceFile, path: &str, value: Option<&str>, out: &mut Vec<Diagnostic>) {
    if let Some(value) = value {
        if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c == ',') {
            out.push(source.at_value(
                path,
                format!("`{value}` is not a SLURM name"),
                Some("a partition or account name has no spaces or commas".into()),
            ));
        }
    }
}

/// `sbatch --mem` syntax: digits with an optional K/M/G/T unit (a trailing `B` is tolerated).
fn valid_memory(text: &str) -> bool {
    let text = text.trim();
    let text = text.strip_suffix(['B', 'b']).unwrap_or(text);
    let digits = text.trim_end_matches(|c: char| "KMGTkmgt".contains(c));
    text.len() - digits.len() <= 1
        && !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
}

/// `sbatch --time` syntax: `[D-]` then one to three `:`-separated numbers (a day prefix needs
/// hours), or `UNLIMITED`.
fn valid_time(text: &str) -> bool {
    if text.eq_ignore_ascii_case("unlimited") || text.eq_ignore_ascii_case("infinite") {
        return true;
    }
    let (days, rest) = match text.split_once('-') {
        Some((d, r)) => (Some(d), r),
        None => (None, text),
    };
    let numeric = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    if days.is_some_and(|d| !numeric(d)) {
        return false;
    }
    let parts: Vec<&str> = rest.split(':').collect();
    !parts.is_empty() && parts.len() <= 3 && parts.iter().all(|p| numeric(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn memory_and_time_syntax() {
        for good in ["4G", "500M", "4096", "1TB", "16g"] {
            assert!(valid_memory(good), "{good}");
        }
        for bad in ["4 GB ", "G", "4X", "-1", "4GG"] {
            assert!(!valid_memory(bad), "{bad}");
        }
        for good in [
            "30",
            "10:00",
            "02:00:00",
            "1-12",
            "1-12:00",
            "1-12:00:00",
            "UNLIMITED",
        ] {
            assert!(valid_time(good), "{good}");
        }
        for bad in ["", "1h", "1:2:3:4", "x-1", "1-"] {
            assert!(!valid_time(bad), "{bad}");
        }
    }

    #[test]
    fn bad_resources_are_reported_at_their_position() {
        let text = "settings:\n  executor: slurm\n  slurm: {max_jobs: 0}\nstages:\n  a:\n    uses: cmd\n    with: {run: 'true'}\n    resources:\n      mem: 4X\n      time: 2h\n";
        let file = SourceFile::parse(Path::new("p.yaml"), text).unwrap();
        let problems = check_cluster_settings(&file);
        let shown: Vec<String> = problems.iter().map(|d| d.to_string()).collect();
        assert_eq!(problems.len(), 3, "{shown:#?}");
        assert!(shown[0].starts_with("p.yaml:3:"), "{}", shown[0]);
        assert!(
            shown[1].starts_with("p.yaml:9:12: stage `a`: `4X`"),
            "{}",
            shown[1]
        );
        assert!(shown[2].starts_with("p.yaml:10:13:"), "{}", shown[2]);
    }

    #[test]
    fn unknown_resource_key_lists_the_allowed_ones() {
        let text =
            "stages:\n  a:\n    uses: cmd\n    with: {run: 'true'}\n    resources: {cpu: 2}\n";
        let err = SourceFile::parse(Path::new("p.yaml"), text).unwrap_err();
        let shown = err.to_string();
        assert!(shown.contains("p.yaml:5:"), "{shown}");
        assert!(shown.contains("unknown field `cpu`"), "{shown}");
        assert!(shown.contains("`cpus`"), "{shown}");
    }
}
