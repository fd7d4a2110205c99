//! The command line: argument parsing (clap), the progress display and the printed summaries.
//! `main.rs` only calls [`main`]. Exit codes: 0 success, 1 an instance failed or verification
//! found damage, 2 a usage, pipeline-file or input error, 3 the cache or the system failed, 130
//! interrupted, 141 stdout closed early.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::exec::{self, Event, InstanceReport, Outcome, RunOptions, RunSummary, Status};
use crate::plan::{render_dag, DagFormat, Plan};
use crate::stage::{describe_params, InputSpec};
use crate::store::{RunHead, RunInstance, RunOutcome, RunRecord, Store};

#[derive(Debug, Parser)]
#[command(
    name = "pipe",
    version,
    about = "Declarative, content-hashed pipelines for ML experiments"
)]
pub struct Cli {
    /// Cache directory (objects, records, checkpoints)
    #[arg(long, global = true, env = "PIPE_CACHE", default_value = "cache")]
    pub cache: PathBuf,
    /// Where outputs are materialized for people to read
    #[arg(
        long,
        global = true,
        env = "PIPE_ARTIFACTS",
        default_value = "artifacts"
    )]
    pub artifacts: PathBuf,
    /// More logging (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run what is new or invalidated; reuse the rest
    Run {
        file: PathBuf,
        /// Parallel thread slots (default: settings.jobs, else the number of cores)
        #[arg(short, long, value_parser = positive_count)]
        jobs: Option<usize>,
        /// Recompute this stage or instance even if cached (repeatable)
        #[arg(long)]
        force: Vec<String>,
        /// Run only this stage or instance, with what it needs (repeatable)
        #[arg(long)]
        only: Vec<String>,
        /// Say what would run and why, run nothing
        #[arg(long)]
        dry_run: bool,
        /// Where instances run (default: settings.executor, else local)
        #[arg(long, value_enum)]
        executor: Option<ExecutorArg>,
        /// Override a parameter or variable without editing the file (repeatable; VALUE is YAML)
        #[arg(
            short = 'S',
            long = "set",
            value_name = "STAGE.PARAM=VALUE|vars.NAME=VALUE"
        )]
        set: Vec<String>,
    },
    /// Run one submitted instance (what a SLURM job calls); exit 0 done, 1 failed, 3 the cache
    /// is not visible on this node
    Exec {
        /// The instance key (`cache/jobs/<key>.json` describes it)
        key: String,
    },
    /// Each instance: up to date, or will run and why
    Status {
        file: PathBuf,
        #[arg(long)]
        force: Vec<String>,
    },
    /// Print the instance graph
    Dag {
        file: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: DagFormat,
    },
    /// List recorded runs, newest first (only those of FILE when given)
    Runs { file: Option<PathBuf> },
    /// What changed between two runs (default: the last two runs of the newest run's pipeline)
    Diff {
        /// The older run (an id from `pipe runs`, or its first digits)
        run_a: Option<String>,
        /// The newer run (default: the newest)
        run_b: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: DiffFormat,
        /// Only parameter and input changes
        #[arg(long)]
        params: bool,
        /// Only metric changes
        #[arg(long)]
        metrics: bool,
    },
    /// Experiments: `pipe exp show FILE` tabulates a run's instances
    Exp {
        #[command(subcommand)]
        command: ExpCommand,
    },
    /// Why an instance ran or was reused in a run (default: the newest run that has it)
    Why {
        instance: String,
        #[arg(long)]
        run: Option<String>,
    },
    /// Show the record, outputs and metrics of a stage's instances
    Show { file: PathBuf, stage: String },
    /// List the stage plugins and their parameters
    Plugins,
    /// Remove cached objects that no record reaches; with --keep, also every record that neither
    /// the named pipelines' current keys nor the last --runs runs reach
    Gc {
        /// Keep what this pipeline needs now (repeatable)
        #[arg(long)]
        keep: Vec<PathBuf>,
        /// With --keep: also keep what the last N runs used
        #[arg(long, default_value = "0")]
        runs: usize,
        /// Say what would be removed, remove nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Re-hash every cached output; remove damaged ones so they are recomputed
    Verify,
    /// Evaluate recurrent-model weights (PyTorch names) on a `string,valid` file
    Eval {
        #[arg(long)]
        variant: crate::model::Variant,
        /// safetensors with embedding.weight, rnn.weight_ih_l0, …, head.bias (masks optional)
        #[arg(long)]
        weights: PathBuf,
        /// CSV with `string,valid` columns (a `split` column is ignored)
        #[arg(long)]
        data: PathBuf,
        #[arg(long, value_enum, default_value = "last-padded")]
        readout: ReadoutArg,
        #[arg(long, default_value = "256")]
        batch_size: usize,
        /// cpu, cuda or cuda:N (needs the CUDA build, `make build-cuda`)
        #[arg(long, default_value = "cpu")]
        device: crate::model::DeviceSpec,
        /// Evaluate in a random order drawn from this seed (as a shuffled test loader), not in
        /// file order; with the last-padded readout the batches' padded lengths then change
        #[arg(long)]
        shuffle: Option<u64>,
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    },
}

/// A count of at least 1, with a message that says so.
fn positive_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1 (it is the number of parallel thread slots)".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

#[derive(Debug, Subcommand)]
pub enum ExpCommand {
    /// One row per instance: matrix values, the parameters that differ, headline metrics
    Show {
        file: PathBuf,
        /// The run (an id or its first digits; default: the newest finished run of FILE)
        #[arg(long)]
        run: Option<String>,
        /// Order each stage's rows by this metric, largest first
        #[arg(long)]
        sort: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: ExpFormat,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExpFormat {
    Table,
    Csv,
    Json,
    Md,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DiffFormat {
    Table,
    Md,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorArg {
    Local,
    Slurm,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReadoutArg {
    LastPadded,
    TrueLength,
}

/// Parses arguments, runs the command, and returns the process exit code.
pub fn main() -> i32 {
    main_with(crate::registry())
}

/// [`main`] with the plugins of `registry`: how a crate outside this repository ships `pipe` with
/// stages of its own (`crates/example-plugin`). Without libtorch: a command that must compute on
/// it is handed to the binary beside this one ([`crate::handover`]).
pub fn main_with(registry: crate::Registry) -> i32 {
    main_inner(registry, None)
}

/// What a binary that links libtorch adds to the command line (`pipe-torch`).
pub struct Tensors {
    /// How the engine counts CUDA devices (it asks only when an instance needs a GPU).
    pub cuda: crate::exec::gpus::CudaProbe,
    /// `pipe eval`: accuracy and loss of a weight file on a data file.
    pub evaluate: fn(&EvalRequest) -> Result<Evaluation, String>,
}

/// What `pipe eval` was asked.
#[derive(Debug, Clone)]
pub struct EvalRequest {
    pub variant: crate::model::Variant,
    pub readout: crate::model::Readout,
    pub weights: PathBuf,
    pub data: PathBuf,
    pub batch_size: usize,
    pub device: crate::model::DeviceSpec,
    pub shuffle: Option<u64>,
}

/// What `pipe eval` prints.
#[derive(Debug, Clone, Copy)]
pub struct Evaluation {
    pub n: usize,
    pub loss: f64,
    pub accuracy: f64,
}

/// [`main_with`] in a binary that links libtorch: nothing is handed over.
pub fn main_with_tensors(registry: crate::Registry, tensors: Tensors) -> i32 {
    main_inner(registry, Some(tensors))
}

fn main_inner(registry: crate::Registry, tensors: Option<Tensors>) -> i32 {
    pipe_engine::phases::start();
    end_quietly_on_a_closed_stdout();
    if let Some(tensors) = &tensors {
        crate::exec::gpus::set_cuda_probe(tensors.cuda);
    }
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    match dispatch(&cli, &registry, tensors.as_ref()) {
        Ok(code) => code,
        Err(err) => {
            if let Some(spec) = err.downcast_ref::<crate::spec::SpecErrors>() {
                eprintln!("{spec}");
            } else {
                eprintln!("error: {err:#}");
            }
            exit_code(&err)
        }
    }
}

/// Ends the process with `code` once stdout and stderr are flushed, skipping destructors:
/// libtorch's static destructors alone take about 0.1 s, which a no-op `pipe run` need not pay.
pub fn exit(code: i32) -> ! {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit only ends the process; every buffer that matters was flushed above.
    unsafe { libc::_exit(code) }
}

/// `pipe status FILE | head`: once the reader is gone, `println!` panics. Like `ls`, `pipe` then
/// ends quietly with 141 (128 + SIGPIPE). SIGPIPE itself stays ignored, because `pipe` writes to
/// its watchdog's stdin and must see a failed write there as an error, not die of it.
fn end_quietly_on_a_closed_stdout() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        // std's own wording (`print!` on an error); the os error names the broken pipe.
        if message.starts_with("failed printing to stdout") && message.contains("os error 32") {
            exit(EXIT_BROKEN_PIPE);
        }
        default_hook(info)
    }));
}

/// Leaves `value` for the process's end to reclaim: a plan and an index of 100,000 instances
/// take a quarter of a second to free, right before the process exits anyway.
fn left_to_exit<T>(value: T) {
    std::mem::forget(value);
}

/// Exit code 3 when the cache or the system failed (I/O, a read-only or busy cache, no cluster);
/// 2 when what the user gave is wrong (arguments, the pipeline file, a selector, an input file).
fn exit_code(err: &anyhow::Error) -> i32 {
    let system = err.chain().any(|cause| {
        cause.is::<crate::store::StoreError>()
            || cause.is::<exec::SlurmError>()
            || matches!(
                cause.downcast_ref::<exec::ExecError>(),
                Some(exec::ExecError::Store(_) | exec::ExecError::Slurm(_))
            )
    });
    if system {
        EXIT_SYSTEM
    } else {
        EXIT_USAGE
    }
}

/// Exit codes (the README lists them): 0 success; 1 an instance failed, or `verify` found
/// damage; 2 a usage, pipeline-file or input error; 3 the cache or the system failed; 130
/// interrupted.
const EXIT_USAGE: i32 = 2;
const EXIT_SYSTEM: i32 = 3;
const EXIT_BROKEN_PIPE: i32 = 141;

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn dispatch(cli: &Cli, registry: &crate::Registry, tensors: Option<&Tensors>) -> Result<i32> {
    match &cli.command {
        Command::Run {
            file,
            jobs,
            force,
            only,
            dry_run,
            executor,
            set,
        } => {
            let source = crate::spec::SourceFile::load(file)?.with_overrides(set)?;
            pipe_engine::phases::mark("pipeline file read");
            let (plan, store) = plan_and_store(registry, source, &cli.cache)?;
            pipe_engine::phases::mark("plan expanded, cache opened");
            if !*dry_run {
                if let Some((i, why)) = exec::first_foreign(&plan, &store, only, force)? {
                    let reason = crate::handover::describe(&plan.instances[i].name, &why);
                    return Err(crate::handover::hand_over(&reason));
                }
            }
            let arguments: Vec<String> = std::env::args().skip(1).collect();
            let mut history = RunRecord::start(file, arguments, *dry_run);
            history.stages = plan.stage_names().into_iter().map(String::from).collect();
            if *dry_run {
                let lines = print_status(&plan, &store, force)?;
                let instances = lines
                    .iter()
                    .map(|(i, status)| RunInstance {
                        name: plan.instances[*i].name.clone(),
                        key: None,
                        outcome: if *status == Status::UpToDate {
                            RunOutcome::Cached
                        } else {
                            RunOutcome::WouldRun
                        },
                        seconds: 0.0,
                        columns: crate::experiments::instance_columns(&plan.instances[*i], None),
                    })
                    .collect();
                record_history(&store, &mut history, Some(instances));
                return Ok(0);
            }
            record_history(&store, &mut history, None);
            let jobs = jobs.or(plan.source.spec.settings.jobs).unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            });
            let options = RunOptions {
                jobs,
                force: force.clone(),
                only: only.clone(),
                artifacts: cli.artifacts.clone(),
            };
            let executor = choose_executor(&plan, *executor)?;
            if !set.is_empty() && matches!(executor, exec::Executor::Slurm(_)) {
                // SLURM workers plan from the file's text, which does not have the overrides.
                anyhow::bail!(
                    "`-S` overrides do not work with the SLURM executor yet; edit the file instead"
                );
            }
            let display = Display::new();
            let result = exec::run_with(&plan, &store, &options, &executor, &|event| {
                display.handle(event)
            });
            display.finish();
            let summary = match result {
                Err(exec::ExecError::Interrupted { cancelled }) => {
                    eprintln!("interrupted: cancelled {cancelled} SLURM job(s); finished instances stay cached");
                    return Ok(130);
                }
                other => other?,
            };
            record_finished_run(&store, &mut history, &plan, &summary);
            pipe_engine::phases::mark("run recorded");
            print_summary(&summary, &cli.artifacts);
            let code = if summary.success() { 0 } else { 1 };
            left_to_exit((plan, store, summary));
            Ok(code)
        }
        Command::Exec { key } => match exec::execute_described(registry, &cli.cache, key) {
            Ok(_) => Ok(0),
            Err(exec::WorkerError::Foreign { instance, why }) => Err(crate::handover::hand_over(
                &crate::handover::describe(&instance, &why),
            )),
            Err(e) => {
                eprintln!("pipe exec: error: {e}");
                Ok(e.exit_code())
            }
        },
        Command::Status { file, force } => {
            let source = crate::spec::SourceFile::load(file)?;
            let (plan, store) = plan_and_store(registry, source, &cli.cache)?;
            print_status(&plan, &store, force)?;
            left_to_exit((plan, store));
            Ok(0)
        }
        Command::Dag { file, format } => {
            let plan = Plan::load(registry, file)?;
            print!("{}", render_dag(&plan, *format));
            Ok(0)
        }
        Command::Diff {
            run_a,
            run_b,
            format,
            params,
            metrics,
        } => {
            let store = open_store(&cli.cache)?;
            let (a, b) = pick_runs(&store, run_a.as_deref(), run_b.as_deref())?;
            let (a, b) = (store.load_run(&a)?, store.load_run(&b)?);
            let diff = crate::compare::diff_runs(&store, &a, &b);
            print_diff(&diff, *format, *params, *metrics)?;
            Ok(0)
        }
        Command::Exp {
            command:
                ExpCommand::Show {
                    file,
                    run,
                    sort,
                    format,
                },
        } => {
            let store = open_store(&cli.cache)?;
            let path = file.canonicalize().unwrap_or_else(|_| file.clone());
            let head = store
                .finished_runs()?
                .into_iter()
                .find(|r| match run {
                    Some(id) => r.id.starts_with(id.as_str()),
                    None => r.pipeline == path,
                })
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "no finished run of {} recorded (run it first; `pipe runs` lists runs)",
                        file.display()
                    )
                })?;
            let record = store.load_run(&head)?;
            // A record of an older version lacks the columns: they come from the file as it is
            // now and the instances' records.
            let rows = crate::experiments::run_rows(record, &store, || Plan::load(registry, file))?;
            let tables = crate::experiments::tables(&rows, sort.as_deref());
            print_tables(&tables, *format)?;
            Ok(0)
        }
        Command::Why { instance, run } => {
            let store = open_store(&cli.cache)?;
            // Newest first, each record read only when the search gets to it.
            let mut runs = store.finished_runs()?.into_iter().filter_map(|head| {
                store
                    .load_run(&head)
                    .map_err(|e| tracing::warn!("skipping run {}: {e}", head.id))
                    .ok()
            });
            let has = |r: &RunRecord| r.instances.iter().any(|i| &i.name == instance);
            let chosen = match run {
                Some(id) => runs.find(|r| r.id.starts_with(id.as_str())),
                None => runs.find(|r| has(r)),
            }
            .ok_or_else(|| anyhow::anyhow!("no recorded run has `{instance}` (see `pipe runs`)"))?;
            let previous = runs.find(|r| has(r));
            println!("{instance} in run {}:", chosen.id);
            for line in crate::compare::why(&store, &chosen, previous.as_ref(), instance) {
                println!("  {line}");
            }
            Ok(0)
        }
        Command::Runs { file } => {
            let store = open_store(&cli.cache)?;
            print_runs(&store, file.as_deref())?;
            Ok(0)
        }
        Command::Show { file, stage } => show(
            &Plan::load(registry, file)?,
            &open_store(&cli.cache)?,
            stage,
        ),
        Command::Plugins => {
            for stage in registry.all() {
                println!(
                    "{} (v{}) — {}",
                    stage.kind(),
                    stage.version(),
                    stage.about()
                );
                if let InputSpec::Named(inputs) = stage.inputs() {
                    for input in inputs {
                        let fan = if input.fan_in {
                            " (fan-in: STAGE[*].OUTPUT)"
                        } else {
                            ""
                        };
                        println!("    input {}{fan} — {}", input.name, input.about);
                    }
                }
                for line in describe_params(&stage.params_schema()) {
                    println!("    {line}");
                }
            }
            Ok(0)
        }
        Command::Gc {
            keep,
            runs,
            dry_run,
        } => {
            let store = open_store(&cli.cache)?;
            let _lock = store.lock(|m| eprintln!("{m}"))?;
            let kept: Option<std::collections::HashSet<String>> = if keep.is_empty() {
                None
            } else {
                let mut keys = std::collections::HashSet::new();
                for file in keep {
                    let plan = Plan::load(registry, file)?;
                    keys.extend(exec::current_keys(&plan, &store));
                }
                for (run, _) in store
                    .runs()?
                    .into_iter()
                    .filter(|(r, _)| !r.dry_run)
                    .take(*runs)
                {
                    let run = store.load_run(&run)?;
                    keys.extend(run.instances.into_iter().filter_map(|i| i.key));
                }
                Some(keys)
            };
            let report = store.gc_keeping(kept.as_ref(), *dry_run)?;
            let verb = if *dry_run { "would remove" } else { "removed" };
            println!(
                "{verb} {} objects ({}), {} records, {} staging and {} checkpoint directories; kept {} objects",
                report.objects_removed,
                human_bytes(report.bytes_freed),
                report.records_removed,
                report.staging_removed,
                report.checkpoints_removed,
                report.objects_kept
            );
            Ok(0)
        }
        Command::Eval {
            variant,
            weights,
            data,
            readout,
            batch_size,
            device,
            shuffle,
            json,
        } => {
            let Some(tensors) = tensors else {
                return Err(crate::handover::hand_over(
                    "`pipe eval` computes on libtorch",
                ));
            };
            let request = EvalRequest {
                variant: *variant,
                readout: match readout {
                    ReadoutArg::LastPadded => crate::model::Readout::LastPadded,
                    ReadoutArg::TrueLength => crate::model::Readout::TrueLength,
                },
                weights: weights.clone(),
                data: data.clone(),
                batch_size: *batch_size,
                device: *device,
                shuffle: *shuffle,
            };
            let report = match (tensors.evaluate)(&request) {
                Ok(report) => report,
                Err(e) => {
                    // The message is complete; its sources would only repeat it.
                    eprintln!("error: {e}");
                    return Ok(2);
                }
            };
            if *json {
                println!(
                    "{}",
                    serde_json::json!({"accuracy": report.accuracy, "loss": report.loss, "n": report.n})
                );
            } else {
                println!("examples: {}", report.n);
                println!("loss (sum of batch means): {:.5}", report.loss);
                println!("accuracy: {:.5}", report.accuracy);
            }
            Ok(0)
        }
        Command::Verify => {
            let store = open_store(&cli.cache)?;
            let _lock = store.lock(|m| eprintln!("{m}"))?;
            let report = store.verify(true)?;
            for p in &report.problems {
                println!(
                    "damaged: {} output `{}`: {} (removed; the next run recomputes it)",
                    p.instance, p.output, p.detail
                );
            }
            println!(
                "verified {} outputs of {} records: {} damaged",
                report.outputs,
                report.records,
                report.problems.len()
            );
            Ok(if report.problems.is_empty() { 0 } else { 1 })
        }
    }
}

/// `--executor`, else the pipeline's `settings.executor`.
fn choose_executor(plan: &Plan, arg: Option<ExecutorArg>) -> Result<exec::Executor> {
    let settings = &plan.source.spec.settings;
    let slurm = match arg {
        Some(ExecutorArg::Slurm) => true,
        Some(ExecutorArg::Local) => false,
        None => settings.executor == crate::spec::ExecutorKind::Slurm,
    };
    if !slurm {
        return Ok(exec::Executor::Local);
    }
    exec::slurm::cluster_available()
        .map_err(|why| anyhow::anyhow!("the SLURM executor needs a cluster: {why}"))?;
    let options = exec::SlurmOptions::new(settings.slurm.clone().unwrap_or_default())?;
    Ok(exec::Executor::Slurm(options))
}

fn open_store(path: &Path) -> Result<Store> {
    Store::open(path).with_context(|| format!("cannot open the cache at {}", path.display()))
}

/// Plans `source` and opens the cache at `cache`. A cache that has an index gets it read while
/// the plan is made: at 100,000 instances each takes about a third of a second. A pipeline error
/// is reported first, as when planning alone.
fn plan_and_store(
    registry: &crate::Registry,
    source: crate::spec::SourceFile,
    cache: &Path,
) -> Result<(Plan, Store)> {
    if !cache.join(crate::store::INDEX_FILE).is_file() {
        let plan = Plan::from_source(registry, source)?;
        return Ok((plan, open_store(cache)?));
    }
    std::thread::scope(|scope| {
        let opening = scope.spawn(|| open_store(cache).inspect(Store::load_index));
        let plan = Plan::from_source(registry, source);
        let store = opening
            .join()
            .map_err(|_| anyhow::anyhow!("opening the cache at {} failed", cache.display()))?;
        Ok((plan?, store?))
    })
}

fn print_status(plan: &Plan, store: &Store, force: &[String]) -> Result<Vec<(usize, Status)>> {
    let lines = exec::status(plan, store, force)?;
    let width = plan
        .instances
        .iter()
        .map(|i| i.name.len())
        .max()
        .unwrap_or(0);
    let mut pending = 0;
    for (i, status) in &lines {
        if *status != Status::UpToDate {
            pending += 1;
        }
        println!("{:width$}  {status}", plan.instances[*i].name);
    }
    println!("{pending} of {} instances would run", lines.len());
    Ok(lines)
}

/// Writes the run's history record: at its start (`None`) and at its end. A cache that cannot
/// take it (read-only) loses only the history, which the run then reports.
fn record_history(store: &Store, record: &mut RunRecord, instances: Option<Vec<RunInstance>>) {
    let written = match instances {
        None => store.save_run(record),
        Some(instances) => {
            store.finish_run(record, instances.len(), |range| instances[range].to_vec())
        }
    };
    if let Err(e) = written {
        tracing::warn!("the run is not recorded in the history: {e}");
    }
}

/// Ends the history record of a run with its instances, made a chunk at a time.
fn record_finished_run(store: &Store, record: &mut RunRecord, plan: &Plan, summary: &RunSummary) {
    let written = store.finish_run(record, summary.reports.len(), |range| {
        run_instances(plan, store, &summary.reports[range])
    });
    if let Err(e) = written {
        tracing::warn!("the run is not recorded in the history: {e}");
    }
}

/// Instances of a finished run, for its history record, with what `exp show` tabulates.
fn run_instances(plan: &Plan, store: &Store, reports: &[InstanceReport]) -> Vec<RunInstance> {
    let columns = crate::experiments::report_columns(plan, store, reports);
    reports
        .iter()
        .zip(columns)
        .map(|(r, columns)| {
            let (outcome, seconds) = match &r.outcome {
                Outcome::Ran { seconds, .. } => (RunOutcome::Ran, *seconds),
                Outcome::Cached { cutoff: false } => (RunOutcome::Cached, 0.0),
                Outcome::Cached { cutoff: true } => (RunOutcome::CutOff, 0.0),
                Outcome::Failed { .. } => (RunOutcome::Failed, 0.0),
                Outcome::Skipped { .. } => (RunOutcome::Skipped, 0.0),
            };
            RunInstance {
                name: r.name.clone(),
                key: r.key.clone(),
                outcome,
                seconds,
                columns,
            }
        })
        .collect()
}

/// The two runs `pipe diff` compares: the given ids (or prefixes), else the last two (non-dry)
/// runs of the pipeline file of the newest one.
fn pick_runs(store: &Store, a: Option<&str>, b: Option<&str>) -> Result<(RunHead, RunHead)> {
    let runs = store.finished_runs()?;
    let find = |id: &str| -> Result<RunHead> {
        let found: Vec<&RunHead> = runs.iter().filter(|r| r.id.starts_with(id)).collect();
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            [] => anyhow::bail!("no finished run `{id}` (see `pipe runs`)"),
            _ => anyhow::bail!("`{id}` names {} runs; give more digits", found.len()),
        }
    };
    match (a, b) {
        (Some(a), Some(b)) => Ok((find(a)?, find(b)?)),
        (Some(a), None) => {
            let newest = runs
                .first()
                .cloned()
                .ok_or_else(|| anyhow::anyhow!("no finished run recorded"))?;
            Ok((find(a)?, newest))
        }
        _ => {
            let newest = runs
                .first()
                .ok_or_else(|| anyhow::anyhow!("no finished run recorded"))?;
            let previous = runs[1..]
                .iter()
                .find(|r| r.pipeline == newest.pipeline)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "only one finished run of {}; name two runs",
                        newest.pipeline.display()
                    )
                })?;
            Ok((previous.clone(), newest.clone()))
        }
    }
}

fn print_diff(
    diff: &crate::compare::RunDiff,
    format: DiffFormat,
    only_params: bool,
    only_metrics: bool,
) -> Result<()> {
    if format == DiffFormat::Json {
        println!("{}", serde_json::to_string_pretty(diff)?);
        return Ok(());
    }
    let (bullet, indent) = match format {
        DiffFormat::Md => ("- ", "  - "),
        _ => ("", "    "),
    };
    println!("runs {} → {}", diff.from, diff.to);
    let show_all = !only_params && !only_metrics;
    if show_all {
        for name in &diff.added {
            println!("{bullet}added: {name}");
        }
        for name in &diff.removed {
            println!("{bullet}removed: {name}");
        }
    }
    for change in &diff.changed {
        println!("{bullet}changed: {}", change.instance);
        if show_all || only_params {
            for line in &change.params {
                println!("{indent}{line}");
            }
            for line in &change.inputs {
                println!("{indent}input {line}");
            }
        }
        if show_all || only_metrics {
            for (name, old, new) in &change.metrics {
                println!("{indent}metric {name}: {old} → {new} ({:+})", new - old);
            }
        }
        if show_all {
            for (output, same) in &change.outputs {
                let what = if *same { "byte-identical" } else { "changed" };
                println!("{indent}output {output}: {what}");
            }
            if let Some(note) = &change.note {
                println!("{indent}{note}");
            }
        }
    }
    println!("{bullet}{} unchanged", diff.unchanged);
    Ok(())
}

fn print_tables(tables: &[crate::experiments::StageTable], format: ExpFormat) -> Result<()> {
    match format {
        ExpFormat::Json => println!("{}", serde_json::to_string_pretty(tables)?),
        ExpFormat::Csv => {
            // Flexible: each stage has its own columns, and its own header row.
            let mut writer = csv::WriterBuilder::new()
                .flexible(true)
                .from_writer(std::io::stdout());
            for table in tables {
                let mut header = vec!["stage".to_string()];
                header.extend(table.columns.iter().cloned());
                writer.write_record(&header)?;
                for row in &table.rows {
                    let mut line = vec![table.stage.clone()];
                    line.extend(row.iter().cloned());
                    writer.write_record(&line)?;
                }
            }
            writer.flush()?;
        }
        ExpFormat::Md => {
            for table in tables {
                println!("### {}\n", table.stage);
                println!("| {} |", table.columns.join(" | "));
                println!("|{}", " --- |".repeat(table.columns.len()));
                for row in &table.rows {
                    println!("| {} |", row.join(" | "));
                }
                println!();
            }
        }
        ExpFormat::Table => {
            for table in tables {
                let widths: Vec<usize> = (0..table.columns.len())
                    .map(|c| {
                        table
                            .rows
                            .iter()
                            .map(|r| r[c].chars().count())
                            .chain([table.columns[c].chars().count()])
                            .max()
                            .unwrap_or(0)
                    })
                    .collect();
                let line = |cells: &[String]| {
                    cells
                        .iter()
                        .zip(&widths)
                        .map(|(c, w)| format!("{c:<w$}"))
                        .collect::<Vec<_>>()
                        .join("  ")
                        .trim_end()
                        .to_string()
                };
                println!("{}", table.stage);
                println!("  {}", line(&table.columns));
                for row in &table.rows {
                    println!("  {}", line(row));
                }
                println!();
            }
        }
    }
    Ok(())
}

/// `pipe runs`: one line per run, newest first.
fn print_runs(store: &Store, file: Option<&Path>) -> Result<()> {
    let only = file.map(|f| f.canonicalize().unwrap_or_else(|_| f.to_path_buf()));
    let runs = store.runs()?;
    println!(
        "{:<19}  {:<19}  {:>8}  {:<11}  {:>5} {:>6} {:>6} {:>7}  pipeline",
        "run", "started (UTC)", "seconds", "state", "ran", "cached", "failed", "skipped"
    );
    for (run, state) in runs
        .iter()
        .filter(|(r, _)| only.as_ref().is_none_or(|p| &r.pipeline == p))
    {
        let seconds = run
            .ended_at
            .map(|end| format!("{}", end.saturating_sub(run.started_at)))
            .unwrap_or_else(|| "-".into());
        let state = if run.dry_run {
            "dry-run".to_string()
        } else {
            state.to_string()
        };
        println!(
            "{:<19}  {:<19}  {:>8}  {:<11}  {:>5} {:>6} {:>6} {:>7}  {}",
            run.id,
            utc_time(run.started_at),
            seconds,
            state,
            run.count(RunOutcome::Ran),
            run.count(RunOutcome::Cached) + run.count(RunOutcome::CutOff),
            run.count(RunOutcome::Failed),
            run.count(RunOutcome::Skipped),
            run.pipeline.display()
        );
    }
    Ok(())
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix time (UTC; days to civil date as in Hinnant's algorithm).
fn utc_time(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let seconds = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// Prints every selected instance; an instance whose record cannot be read is reported on
/// stderr and the others are still shown. Exit code 0, or 3 when any record was unreadable
/// (a damaged cache; `pipe verify` and the next run repair it). An unknown selector is an error.
fn show(plan: &Plan, store: &Store, selector: &str) -> Result<i32> {
    let picked = plan.select(selector);
    if picked.is_empty() {
        anyhow::bail!(
            "`{selector}` matches no stage or instance; stages: {}",
            plan.stage_names().join(", ")
        );
    }
    // A hash for display: its first 12 characters (all of a damaged, shorter one).
    let short = |hash: &str| hash.get(..12).unwrap_or(hash).to_string();
    let mut unreadable = 0;
    for i in picked {
        let instance = &plan.instances[i];
        println!(
            "{} ({} v{})",
            instance.name,
            instance.plugin.kind(),
            instance.plugin.version()
        );
        println!("  params: {}", instance.resolved.params);
        if let Some((job, log)) = exec::slurm::last_job(store, &instance.artifact_dir()) {
            println!("  SLURM job {job}, log: {}", log.display());
        }
        let record = match store.latest_record(&instance.artifact_dir()) {
            Ok(record) => record,
            Err(e) => {
                unreadable += 1;
                println!("  record unreadable (see stderr)");
                eprintln!("error: {}: {e}", instance.name);
                continue;
            }
        };
        match record {
            None => println!("  not run yet in this cache"),
            Some(record) => {
                println!(
                    "  key: {}  ran in {:.2}s",
                    short(&record.key),
                    record.seconds
                );
                for (name, output) in &record.outputs {
                    println!(
                        "  output {name}: artifacts/{}/{} ({}, {})",
                        instance.artifact_dir(),
                        output.path,
                        human_bytes(output.size),
                        short(&output.hash)
                    );
                }
                if let Some(metrics) = &record.metrics {
                    println!("  metrics: {metrics}");
                }
                let log = store
                    .root()
                    .join("logs")
                    .join(format!("{}.log", record.key));
                if log.exists() {
                    println!("  log: {}", log.display());
                }
            }
        }
    }
    if unreadable > 0 {
        eprintln!(
            "error: {unreadable} record(s) could not be read; `pipe verify` removes damaged \
             records and the next `pipe run` recomputes them"
        );
        return Ok(EXIT_SYSTEM);
    }
    Ok(0)
}

fn print_summary(summary: &RunSummary, artifacts: &Path) {
    for report in &summary.reports {
        match &report.outcome {
            Outcome::Ran { seconds, reason } => {
                println!("  ran     {:<32} {seconds:>8.2}s  ({reason})", report.name)
            }
            Outcome::Cached { cutoff: true } => println!(
                "  cached  {:<32}  (upstream re-ran, same output)",
                report.name
            ),
            Outcome::Cached { cutoff: false } => {}
            Outcome::Failed { error, log } => {
                println!("  FAILED  {}: {error}", report.name);
                if let Some(log) = log {
                    println!("          log: {}", log.display());
                }
            }
            Outcome::Skipped { because } => println!("  skipped {} ({because})", report.name),
        }
    }
    println!(
        "{} ran, {} cached, {} failed, {} skipped in {:.2}s; artifacts in {}",
        summary.ran().len(),
        summary.cached().len(),
        summary.failed().len(),
        summary.skipped().len(),
        summary.seconds,
        artifacts.display()
    );
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Progress bars on a terminal; plain log lines otherwise.
struct Display {
    multi: Option<MultiProgress>,
    overall: Mutex<Option<ProgressBar>>,
    spinners: Mutex<std::collections::HashMap<String, ProgressBar>>,
}

impl Display {
    fn new() -> Self {
        let multi = std::io::stderr().is_terminal().then(MultiProgress::new);
        Display {
            multi,
            overall: Mutex::new(None),
            spinners: Mutex::new(Default::default()),
        }
    }

    fn handle(&self, event: Event<'_>) {
        // Without a terminal the closing summary (and `-v` logs) say everything.
        let Some(multi) = &self.multi else { return };
        match event {
            Event::Planned { total } => {
                let bar = multi.add(ProgressBar::new(total as u64));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{elapsed_precise} [{bar:30}] {pos}/{len} instances {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                if let Ok(mut overall) = self.overall.lock() {
                    *overall = Some(bar);
                }
            }
            Event::Started { instance, reason } => {
                let spinner = multi.add(ProgressBar::new_spinner());
                spinner.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix} {elapsed} {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                spinner.set_prefix(instance.to_string());
                spinner.set_message(format!("({reason})"));
                spinner.enable_steady_tick(Duration::from_millis(200));
                if let Ok(mut spinners) = self.spinners.lock() {
                    spinners.insert(instance.to_string(), spinner);
                }
            }
            Event::Progress { instance, message } => {
                if let Some(spinner) = self
                    .spinners
                    .lock()
                    .ok()
                    .and_then(|s| s.get(instance).cloned())
                {
                    spinner.set_message(message.to_string());
                }
            }
            Event::Finished { instance, outcome } => {
                if let Some(spinner) = self
                    .spinners
                    .lock()
                    .ok()
                    .and_then(|mut s| s.remove(instance))
                {
                    spinner.finish_and_clear();
                    multi.remove(&spinner);
                }
                if let Outcome::Failed { error, .. } = outcome {
                    let _ = multi.println(format!("FAILED {instance}: {error}"));
                }
                if let Some(bar) = self.overall.lock().ok().and_then(|o| o.clone()) {
                    bar.inc(1);
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = self.overall.lock().ok().and_then(|mut o| o.take()) {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_time_formats_known_instants() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00");
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc_time(1_796_114_045), "2026-12-01 08:34:05");
    }
}
