//! Fault injection: `kill -9` of `pipe` at seeded random moments while it stores a large output
//! and while many small instances finish. After each kill the re-run redoes nothing that had a
//! record, `verify` is clean, staging is empty and every artifact is what a clean run gives.

use std::collections::BTreeSet;
use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{finished, kill9, ran, reused, Sandbox};

const TRIALS: u64 = 20;
const SMALL: usize = 24;

fn pipeline() -> String {
    let values: Vec<String> = (0..SMALL).map(|i| format!("s{i}")).collect();
    format!(
        r#"
stages:
  big:
    uses: cmd
    with:
      run: 'mkdir "$PIPE_OUT/tree"; for i in $(seq 1 200); do seq $i 3000 > "$PIPE_OUT/tree/f$i"; done; seq 1 3000000 > "$PIPE_OUT/large"'
      outputs: {{tree: tree, large: large}}
  small:
    uses: cmd
    foreach: {{v: [{}]}}
    with: {{run: 'echo "$PIPE_INSTANCE" > "$PIPE_OUT/o"', outputs: {{o: o}}}}
  all:
    uses: cmd
    inputs: {{o: 'small[*].o'}}
    with: {{run: 'cat "$PIPE_IN_O"/* | sort > "$PIPE_OUT/all"', outputs: {{all: all}}}}
"#,
        values.join(", ")
    )
}

/// splitmix64: a fixed sequence of delays, the same on every machine.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The instance names that have a record in the cache.
fn recorded_instances(sandbox: &Sandbox) -> BTreeSet<String> {
    let Ok(dir) = fs::read_dir(sandbox.cache().join("records")) else {
        return BTreeSet::new();
    };
    dir.flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| {
            let record: serde_json::Value =
                serde_json::from_slice(&fs::read(e.path()).ok()?).ok()?;
            Some(record["instance"].as_str()?.to_string())
        })
        .collect()
}

fn expected_large() -> String {
    (1..=3_000_000).map(|i| format!("{i}\n")).collect()
}

#[test]
fn kill_9_at_random_moments_loses_nothing_finished_and_leaves_a_clean_cache() {
    let yaml = pipeline();
    // How long a whole run takes here, so the kills fall inside it.
    let probe = Sandbox::new();
    probe.write(&yaml);
    let clock = Instant::now();
    assert!(probe.cli(&["run", "pipeline.yaml"]).status.success());
    let full = clock.elapsed();
    let large = expected_large();

    let mut state = 0x5EED;
    let mut killed_with_some_finished = 0;
    for trial in 0..TRIALS {
        let sandbox = Sandbox::new();
        sandbox.write(&yaml);
        let delay = Duration::from_micros(splitmix(&mut state) % (full.as_micros() as u64).max(1));
        let mut child = sandbox
            .cli_command(&["run", "pipeline.yaml", "--jobs", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn pipe");
        std::thread::sleep(delay);
        if child.try_wait().expect("wait").is_none() {
            kill9(child.id());
        }
        let _ = child.wait();
        let before = recorded_instances(&sandbox);
        if !before.is_empty() {
            killed_with_some_finished += 1;
        }

        let (summary, events) = sandbox.run_recorded(&yaml);
        assert!(summary.success(), "trial {trial}: {:?}", summary.reports);
        let redone: Vec<String> = finished(&events, ran)
            .into_iter()
            .filter(|name| before.contains(name))
            .collect();
        assert!(
            redone.is_empty(),
            "trial {trial} ({delay:?}): finished work redone: {redone:?}"
        );
        assert_eq!(
            finished(&events, ran).len() + finished(&events, reused).len(),
            SMALL + 2,
            "trial {trial}"
        );

        let store = pipe::Store::open(&sandbox.cache()).expect("store");
        let report = store.verify(false).expect("verify");
        assert!(
            report.problems.is_empty(),
            "trial {trial}: {:?}",
            report.problems
        );
        let staging: Vec<_> = fs::read_dir(sandbox.cache().join("staging"))
            .expect("staging")
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.path())
            .collect();
        assert!(
            staging.is_empty(),
            "trial {trial}: staging left {staging:?}"
        );

        assert!(
            sandbox.read_artifact("big/large") == large,
            "trial {trial}: large output"
        );
        for i in [1, 77, 200] {
            let expected: String = (i..=3000).map(|n| format!("{n}\n")).collect();
            assert_eq!(sandbox.read_artifact(&format!("big/tree/f{i}")), expected);
        }
        let all: String = {
            let mut names: Vec<String> = (0..SMALL).map(|i| format!("small[s{i}]\n")).collect();
            names.sort();
            names.concat()
        };
        assert_eq!(sandbox.read_artifact("all/all"), all, "trial {trial}");
    }
    // The delays must actually land mid-run, or the trials prove nothing.
    assert!(
        killed_with_some_finished >= 3,
        "only {killed_with_some_finished} kills found finished work"
    );
}
