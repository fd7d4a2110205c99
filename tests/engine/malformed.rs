//! A seeded corpus of mutated pipeline files: `pipe` must answer each with exit 0 or a validation
//! error (exit 2) that names `file:line:col`, never a panic, a signal or a hang.
//!
//! The mutations (deleted, duplicated, swapped and re-indented lines, truncation, inserted bytes,
//! scalars replaced by lists, maps and out-of-range numbers, duplicated keys) come from a tiny
//! splitmix64 generator with a fixed seed, so a failure names a case that reproduces exactly.
//! Only `pipe dag` and `pipe run --dry-run` are used: neither executes a stage.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::common::Sandbox;

/// How many mutated files are checked.
const CASES: usize = 300;
/// Each `pipe` invocation must finish within this.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Valid pipelines the mutations start from.
const BASES: [&str; 4] = [
    super::caching::HELLO,
    "seed: 3
vars:
  sizes: [1, 2]
  name: demo
settings:
  jobs: 2
  executor: local
stages:
  make:
    uses: cmd
    foreach: {size: '${vars.sizes}', kind: [a, b]}
    seed: 11
    with:
      run: 'seq ${size} > \"$PIPE_OUT/n.txt\"; mkdir -p \"$PIPE_OUT/d\"'
      outputs:
        n: n.txt
        d: d
      env: {NAME: '${vars.name}', KIND: '${kind}'}
      threads: 1
    resources: {cpus: 1, mem: 1G, time: '00:10:00'}
  gather:
    uses: cmd
    inputs: {all: 'make[*].n', one: 'make[1,a].d'}
    needs: [make]
    with:
      run: 'ls \"$PIPE_IN_ALL\" > \"$PIPE_OUT/list.txt\"'
      outputs: {list: list.txt}
",
    "stages:
  a:
    uses: cmd
    with: {run: 'echo a > \"$PIPE_OUT/a\"', outputs: {a: a}}
  b:
    uses: cmd
    inputs: {x: a.a}
    with:
      run: |
        cat \"$PIPE_IN_X\" > \"$PIPE_OUT/b\"
        echo $${HOME} >> \"$PIPE_OUT/b\"
      outputs: {b: b}
      files: [pipeline.yaml]
",
    include_str!("../../pipelines/quick.yaml"),
];

/// Snippets inserted at random places.
const INSERTS: &[&str] = &[
    "\t",
    "${",
    "}",
    "[*]",
    "${vars.",
    "${word}",
    "${vars.nope}",
    "$${",
    "\u{feff}",
    "é",
    "🦀",
    "\u{0}",
    "\u{7f}",
    ":",
    ": ",
    "- ",
    "&a ",
    "*a",
    "? ",
    "!!str ",
    "!!binary ",
    "{",
    "[",
    "]",
    "'",
    "\"",
    "#",
    "\n",
    "---\n",
    "...\n",
    "<<: *a\n",
    "|",
    ">",
    ",",
    "\r\n",
    "\\",
    "%YAML 1.2\n",
    "  ",
    "..",
    "/",
    "[*].",
    ".out",
    "stages:",
    "uses: cmd",
    "foreach: {v: [1]}",
];

/// Values that replace a scalar.
const VALUES: &[&str] = &[
    "[1, 2]",
    "{a: 1}",
    "99999999999999999999999999",
    "-1",
    "-0",
    "0",
    "1e400",
    ".nan",
    "0x10",
    "null",
    "~",
    "''",
    "true",
    "[]",
    "{}",
    "${vars.nope}",
    "${seed}",
    "'${'",
    "'[*]'",
    "'a[*].b'",
    "'.'",
    "'..'",
    "/abs",
    "'../up'",
    "PIPE_OUT",
    "[[[[[[[[[[1]]]]]]]]]]",
    "&x [1]",
    "*x",
    "!!int 3",
    "{run: true}",
    "'${vars.sizes}'",
    "'${vars.name}'",
];

/// splitmix64: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// Splits into lines keeping each `\n`.
fn lines(text: &[u8]) -> Vec<Vec<u8>> {
    text.split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

/// One random mutation of `text`.
fn mutate(text: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut lines = lines(text);
    if lines.is_empty() {
        lines.push(b"\n".to_vec());
    }
    let n = lines.len();
    match rng.below(12) {
        // Delete a line.
        0 => {
            lines.remove(rng.below(n));
        }
        // Duplicate a line (often a key: a duplicate key).
        1 => {
            let i = rng.below(n);
            let copy = lines[i].clone();
            lines.insert(i + 1, copy);
        }
        // Swap two lines.
        2 => {
            let (i, j) = (rng.below(n), rng.below(n));
            lines.swap(i, j);
        }
        // Truncate anywhere (even inside a UTF-8 sequence).
        3 => {
            let mut flat = lines.concat();
            flat.truncate(rng.below(flat.len() + 1));
            return flat;
        }
        // Change a line's indentation.
        4 => {
            let i = rng.below(n);
            let line = &mut lines[i];
            match rng.below(4) {
                0 => line.splice(0..0, b"  ".iter().copied()).for_each(drop),
                1 => line.splice(0..0, b"\t".iter().copied()).for_each(drop),
                2 => line.splice(0..0, b" ".iter().copied()).for_each(drop),
                _ => {
                    let spaces = line.iter().take_while(|&&b| b == b' ').count();
                    line.drain(..spaces.min(1 + rng.below(4)));
                }
            }
        }
        // Insert a snippet at a random byte.
        5 | 6 => {
            let mut flat = lines.concat();
            let at = rng.below(flat.len() + 1);
            let snippet = rng.pick(INSERTS).as_bytes();
            flat.splice(at..at, snippet.iter().copied());
            return flat;
        }
        // Insert raw bytes, valid UTF-8 or not.
        7 => {
            let mut flat = lines.concat();
            let at = rng.below(flat.len() + 1);
            let count = 1 + rng.below(3);
            let bytes: Vec<u8> = (0..count).map(|_| rng.next() as u8).collect();
            flat.splice(at..at, bytes);
            return flat;
        }
        // Replace the value after a `key: ` with something of another shape.
        8 | 9 => {
            let candidates: Vec<usize> = (0..n)
                .filter(|&i| lines[i].windows(2).any(|w| w == b": "))
                .collect();
            if let Some(&i) = candidates.get(rng.below(candidates.len())) {
                let line = &lines[i];
                let cut = line.windows(2).position(|w| w == b": ").unwrap_or(0) + 2;
                let mut new = line[..cut].to_vec();
                let value = rng.pick(VALUES).to_string();
                let value = if value.len() < 3 && rng.below(8) == 0 {
                    "x".repeat(20_000)
                } else {
                    value
                };
                new.extend_from_slice(value.as_bytes());
                new.push(b'\n');
                lines[i] = new;
            }
        }
        // Duplicate a block of lines (a whole stage or map: duplicate keys below it).
        10 => {
            let i = rng.below(n);
            let j = (i + 1 + rng.below(6)).min(n);
            let block: Vec<Vec<u8>> = lines[i..j].to_vec();
            for (k, line) in block.into_iter().enumerate() {
                lines.insert(j + k, line);
            }
        }
        // Change one character of a key (a typo) or of any text.
        _ => {
            let i = rng.below(n);
            let line = &mut lines[i];
            if !line.is_empty() {
                let at = rng.below(line.len());
                let replacement = *rng.pick(b"aZ_-.[]{}:*$ 0\t");
                line[at] = replacement;
            }
        }
    }
    lines.concat()
}

/// The corpus: each base mutated one to three times, deterministically.
fn corpus() -> Vec<Vec<u8>> {
    let mut rng = Rng(0x5eed_2026_0001);
    (0..CASES)
        .map(|i| {
            let mut text = BASES[i % BASES.len()].as_bytes().to_vec();
            for _ in 0..1 + rng.below(3) {
                text = mutate(&text, &mut rng);
            }
            text
        })
        .collect()
}

/// Whether `text` contains `pipeline.yaml:LINE:COL` (digits, a colon, digits).
fn has_position(text: &str) -> bool {
    text.match_indices("pipeline.yaml:").any(|(at, m)| {
        let rest = &text[at + m.len()..];
        let line = rest.chars().take_while(char::is_ascii_digit).count();
        if line == 0 || !rest[line..].starts_with(':') {
            return false;
        }
        rest[line + 1..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

/// Runs one case; `Ok` is the exit code (0 or 2), `Err` says what was wrong.
fn check_case(index: usize, text: &[u8]) -> Result<i32, String> {
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.path().join("pipeline.yaml"), text).map_err(|e| e.to_string())?;
    let args: &[&str] = if index % 3 == 2 {
        &["run", "--dry-run", "pipeline.yaml"]
    } else {
        &["dag", "pipeline.yaml"]
    };
    let mut child = sandbox
        .cli_command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start pipe: {e}"))?;
    let mut stderr_pipe = child.stderr.take().ok_or("no stderr")?;
    // Read stderr on a thread so a chatty process cannot block on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr_pipe, &mut buf);
        buf
    });
    let start = Instant::now();
    let status = loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => break status,
            None if start.elapsed() > TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("still running after {TIMEOUT:?}; killed"));
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    };
    let err = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    match status.code() {
        Some(0) => Ok(0),
        Some(2) if has_position(&err) => Ok(2),
        Some(2) => Err(format!("exit 2 without a file:line:col:\n{err}")),
        Some(code) => Err(format!("exit {code}:\n{err}")),
        None => Err(format!("killed by a signal ({status}):\n{err}")),
    }
}

#[test]
fn mutated_pipelines_are_rejected_with_a_position_or_accepted() {
    let corpus = corpus();
    let next = AtomicUsize::new(0);
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let rejected = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(text) = corpus.get(i) else { break };
                match check_case(i, text) {
                    Ok(0) => {}
                    Ok(_) => {
                        rejected.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(why) => failures.lock().unwrap().push(format!(
                        "case {i}: {why}\n--- file ---\n{}\n------------",
                        String::from_utf8_lossy(text)
                    )),
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    let rejected = rejected.into_inner();
    eprintln!("{rejected} of {CASES} mutated files rejected, the rest accepted");
    // The mutations must mostly break something, or the suite tests little.
    assert!(rejected >= CASES / 3, "only {rejected} of {CASES} rejected");
    assert!(
        failures.is_empty(),
        "{} of {CASES} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_bases_are_valid() {
    for (i, base) in BASES.iter().enumerate() {
        assert_eq!(check_case(0, base.as_bytes()), Ok(0), "base {i}");
        assert_eq!(check_case(2, base.as_bytes()), Ok(0), "base {i} (dry run)");
    }
}

#[test]
fn position_check_needs_line_and_column() {
    assert!(has_position("error: pipeline.yaml:3:7: bad"));
    assert!(!has_position("error: pipeline.yaml: bad"));
    assert!(!has_position("error: pipeline.yaml:3: bad"));
}
