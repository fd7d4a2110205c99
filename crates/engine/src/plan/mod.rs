//! From a parsed pipeline file to a plan: `foreach` expansion, interpolation, typed parameters,
//! input wiring and the instance DAG (petgraph), validated as a whole before anything runs.
//!
//! Like turborepo's `validate()`, planning collects every problem of the file, so a user fixes
//! them in one pass.

mod inputs;
mod labels;
mod render;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use indexmap::IndexMap;
use petgraph::graph::{DiGraph, NodeIndex};
use rayon::prelude::*;
use serde_yaml::Value;

use crate::spec::{self, Diagnostic, Scope, SourceFile, SpecErrors};
use crate::stage::{InputSpec, ParamError, Registry, Resolved, Stage};

pub use inputs::InputRef;
pub use labels::matrix_label;
pub use render::{render_dag, DagFormat};

/// How an instance's input is wired to upstream outputs.
#[derive(Debug, Clone)]
pub enum InputBinding {
    One {
        instance: usize,
        output: String,
    },
    /// Fan-in over these upstream instances, in their declaration order.
    Many {
        instances: Vec<usize>,
        output: String,
    },
}

/// An instance's inputs by name, in name order: a sorted vector (as [`crate::store::OutputMap`]),
/// since a `BTreeMap`'s first node is 1 KB for the one to three inputs an instance has.
pub type InputBindings = litemap::LiteMap<String, InputBinding>;

/// One concrete unit of work: a stage with one combination of its `foreach` values.
pub struct Instance {
    pub index: usize,
    /// `words[alpha]`, or `joined` when the stage has no matrix.
    pub name: String,
    pub stage: String,
    /// Matrix values, escaped and joined by `-` (`lstm-both`, see [`matrix_label`]); names the
    /// artifact directory and the fan-in entry, and is unique within the stage.
    pub label: Option<String>,
    pub matrix: IndexMap<String, Value>,
    pub plugin: Arc<dyn Stage>,
    pub resolved: Resolved,
    pub seed: u64,
    pub inputs: InputBindings,
    /// Project files the stage reads, with their content hashes taken when the plan was made.
    pub files: Vec<ExternalFile>,
    /// Upstream instances (inputs and `needs`), sorted, without duplicates.
    pub deps: Vec<usize>,
}

impl Instance {
    /// The instance's entry in a fan-in (its label, or the stage name without a matrix).
    pub fn entry_label(&self) -> String {
        self.label.clone().unwrap_or_else(|| self.stage.clone())
    }

    /// Relative artifact directory: `<stage>` or `<stage>/<label>`.
    pub fn artifact_dir(&self) -> String {
        match &self.label {
            Some(label) => format!("{}/{}", self.stage, label),
            None => self.stage.clone(),
        }
    }
}

/// A project file whose content is part of an instance's key.
#[derive(Debug, Clone)]
pub struct ExternalFile {
    /// As written in the parameters (relative to the pipeline file).
    pub relative: String,
    pub hash: String,
}

/// A validated pipeline, ready to execute.
pub struct Plan {
    pub source: SourceFile,
    pub instances: Vec<Instance>,
    /// Instance indices in a dependency-respecting order.
    pub order: Vec<usize>,
    pub graph: DiGraph<usize, ()>,
    /// The pipeline file's directory (absolute).
    pub project_dir: PathBuf,
}

impl Plan {
    /// Loads, expands and validates a pipeline file; `uses:` names plugins of `registry`.
    pub fn load(registry: &Registry, path: &Path) -> Result<Plan, SpecErrors> {
        Self::from_source(registry, SourceFile::load(path)?)
    }

    pub fn from_source(registry: &Registry, source: SourceFile) -> Result<Plan, SpecErrors> {
        let mut builder = Builder {
            source: &source,
            registry,
            diagnostics: Vec::new(),
        };
        let instances = builder.expand();
        let mut diagnostics = builder.diagnostics;
        diagnostics.extend(spec::check_cluster_settings(&source));
        let (graph, order) = match build_graph(&instances) {
            Ok(ok) => ok,
            Err(cycle) => {
                let first = instances[cycle[0]].stage.clone();
                diagnostics.push(source.at_key(
                    &format!("stages.{first}"),
                    format!(
                        "the pipeline has a cycle: {}",
                        cycle
                            .iter()
                            .chain(std::iter::once(&cycle[0]))
                            .map(|&i| instances[i].name.as_str())
                            .collect::<Vec<_>>()
                            .join(" → ")
                    ),
                    Some("a stage cannot depend on its own outputs; remove one of these inputs or needs".into()),
                ));
                (DiGraph::new(), Vec::new())
            }
        };
        if !diagnostics.is_empty() {
            let mut seen = HashSet::new();
            diagnostics.retain(|d| seen.insert((d.pos, d.message.clone())));
            return Err(SpecErrors(diagnostics));
        }
        let project_dir = project_dir(&source.path);
        Ok(Plan {
            source,
            instances,
            order,
            graph,
            project_dir,
        })
    }

    /// Indices of instances whose stage or instance name is `selector`.
    pub fn select(&self, selector: &str) -> Vec<usize> {
        self.instances
            .iter()
            .filter(|i| i.stage == selector || i.name == selector)
            .map(|i| i.index)
            .collect()
    }

    /// `selected` plus everything they (transitively) depend on.
    pub fn with_dependencies(&self, selected: &[usize]) -> HashSet<usize> {
        let mut keep = HashSet::new();
        let mut stack: Vec<usize> = selected.to_vec();
        while let Some(i) = stack.pop() {
            if keep.insert(i) {
                stack.extend(&self.instances[i].deps);
            }
        }
        keep
    }

    /// Stage names in file order.
    pub fn stage_names(&self) -> Vec<&str> {
        self.source.spec.stages.keys().map(String::as_str).collect()
    }
}

struct Builder<'a> {
    source: &'a SourceFile,
    registry: &'a Registry,
    diagnostics: Vec<Diagnostic>,
}

/// Why one combination's parameters did not resolve.
enum Unresolved {
    Interpolation(spec::InterpolationError),
    Params(Vec<ParamError>),
}

/// A stage's expanded instances, before inputs are wired.
struct Expanded {
    stage: String,
    indices: Vec<usize>,
    /// Instance index by its matrix values as a reference writes them (`alpha`, `lstm,both`),
    /// built when a reference first selects from the stage, so binding `stage[values]` is one
    /// lookup, not a scan of the stage: a scan made binding 50,000 such references take 25 s.
    by_selector: std::cell::OnceCell<HashMap<String, usize>>,
}

impl Expanded {
    fn new(stage: &str, indices: Vec<usize>) -> Expanded {
        Expanded {
            stage: stage.to_string(),
            indices,
            by_selector: std::cell::OnceCell::new(),
        }
    }

    /// The instance whose matrix values are `wanted` (the first, should two share them).
    fn selected(&self, wanted: &str, instances: &[Instance]) -> Option<usize> {
        let by_selector = self.by_selector.get_or_init(|| {
            let mut map = HashMap::with_capacity(self.indices.len());
            for &i in &self.indices {
                map.entry(selector_of(&instances[i].name).to_string())
                    .or_insert(i);
            }
            map
        });
        by_selector.get(wanted).copied()
    }
}

/// The matrix values of instance `name` as a reference selects them: `words[alpha]` → `alpha`.
fn selector_of(name: &str) -> &str {
    name[name.find('[').map(|p| p + 1).unwrap_or(name.len())..].trim_end_matches(']')
}

impl Builder<'_> {
    fn expand(&mut self) -> Vec<Instance> {
        let spec = &self.source.spec;
        let mut instances: Vec<Instance> = Vec::new();
        let mut by_stage: HashMap<String, Expanded> = HashMap::new();
        let mut names: HashSet<String> = HashSet::new();
        if spec.stages.is_empty() {
            self.diagnostics.push(self.source.at_key(
                "stages",
                "the pipeline has no stages".into(),
                Some("add at least one entry under `stages:`".into()),
            ));
        }

        for (stage_name, stage) in &spec.stages {
            let base = format!("stages.{stage_name}");
            if let Some(bad) = stage_name
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
            {
                self.diagnostics.push(self.source.at_key(
                    &base,
                    format!("stage name `{stage_name}` contains `{bad}`"),
                    Some("use letters, digits, `_` and `-` only".into()),
                ));
                continue;
            }
            let Some(plugin) = self.registry.get(&stage.uses) else {
                let suggestion = spec::suggest(&stage.uses, self.registry.kinds());
                self.diagnostics.push(self.source.at_value(
                    &format!("{base}.uses"),
                    format!("unknown plugin `{}` in stage `{stage_name}`", stage.uses),
                    Some(match suggestion {
                        Some(s) => format!("did you mean `{s}`? (`pipe plugins` lists all)"),
                        None => format!(
                            "available plugins: {} (`pipe plugins` shows their parameters)",
                            self.registry.kinds().collect::<Vec<_>>().join(", ")
                        ),
                    }),
                ));
                continue;
            };
            let Some(combinations) = self.matrix(stage_name, &stage.foreach) else {
                continue;
            };
            instances.reserve_exact(combinations.len());
            let schema = plugin.params_schema();
            // A matrix over `seed` gives each instance its own seed (repeats of one
            // experiment); otherwise the stage's seed, else the pipeline's.
            let seeds: Vec<Option<u64>> = combinations
                .iter()
                .map(|matrix| match matrix.get("seed") {
                    None => Some(stage.seed.unwrap_or(spec.seed)),
                    Some(value) => value.as_u64(),
                })
                .collect();
            // Interpolating and checking the parameters is most of an expansion's time and
            // changes nothing shared: done for every combination in parallel, used in order.
            let prepared: Vec<_> = combinations
                .par_iter()
                .zip(&seeds)
                .map(|(matrix, seed)| {
                    let scope = Scope {
                        vars: &spec.vars,
                        matrix,
                        seed: (*seed)?,
                    };
                    let resolved = spec::interpolate(&Value::Mapping(stage.with.clone()), &scope)
                        .map_err(Unresolved::Interpolation)
                        .and_then(|with| {
                            plugin.resolve(&with, &schema).map_err(Unresolved::Params)
                        });
                    Some(resolved)
                })
                .collect();
            let mut indices = Vec::new();
            let mut labels: HashMap<String, String> = HashMap::new();
            for ((matrix, seed), prepared) in combinations.into_iter().zip(seeds).zip(prepared) {
                let (Some(seed), Some(resolved)) = (seed, prepared) else {
                    self.diagnostics.push(self.source.at_value(
                        &format!("stages.{stage_name}.foreach.seed"),
                        format!(
                            "`foreach.seed` of stage `{stage_name}` must list whole numbers ≥ 0, \
                             got {}",
                            serde_yaml::to_string(&matrix.get("seed"))
                                .unwrap_or_default()
                                .trim()
                        ),
                        Some("write e.g. `foreach: {seed: [0, 1, 2, 3, 4]}`".into()),
                    ));
                    continue;
                };
                let label = (!matrix.is_empty()).then(|| matrix_label(&matrix));
                let name = if matrix.is_empty() {
                    stage_name.clone()
                } else {
                    format!(
                        "{stage_name}[{}]",
                        matrix
                            .values()
                            .map(|v| spec::scalar_text(v).unwrap_or_default())
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                };
                if !names.insert(name.clone()) {
                    self.diagnostics.push(self.source.at_key(
                        &format!("{base}.foreach"),
                        format!("duplicate instance `{name}`"),
                        Some("each combination of `foreach` values must be unique".into()),
                    ));
                    continue;
                }
                if let Some(label) = &label {
                    if let Some(other) = labels.insert(label.clone(), name.clone()) {
                        self.diagnostics.push(
                            self.source.at_key(
                                &format!("{base}.foreach"),
                                format!(
                                    "instances `{other}` and `{name}` would share the artifact \
                                 directory `{stage_name}/{label}`"
                                ),
                                Some(
                                    "make the `foreach` values differ in more than case or \
                                  length-shortened text"
                                        .into(),
                                ),
                            ),
                        );
                        continue;
                    }
                }
                let resolved = match resolved {
                    Ok(r) => r,
                    Err(Unresolved::Interpolation(e)) => {
                        self.diagnostics.push(self.source.at_value(
                            &format!("{base}.with.{}", e.path),
                            format!("stage `{stage_name}`: {}", e.message),
                            e.help,
                        ));
                        continue;
                    }
                    Err(Unresolved::Params(errors)) => {
                        for error in errors {
                            self.param_diagnostic(stage_name, plugin.kind(), &name, error);
                        }
                        continue;
                    }
                };
                let files = self.hash_files(stage_name, &resolved.files);
                let index = instances.len();
                indices.push(index);
                instances.push(Instance {
                    index,
                    name,
                    stage: stage_name.clone(),
                    label,
                    matrix,
                    plugin: plugin.clone(),
                    resolved,
                    seed,
                    inputs: InputBindings::new(),
                    files,
                    deps: Vec::new(),
                });
            }
            by_stage.insert(stage_name.clone(), Expanded::new(stage_name, indices));
        }

        // Wire inputs and needs now that every stage's instances exist.
        for i in 0..instances.len() {
            let stage_name = instances[i].stage.clone();
            let stage = &spec.stages[&stage_name];
            let scope_matrix = instances[i].matrix.clone();
            let seed = instances[i].seed;
            let scope = Scope {
                vars: &spec.vars,
                matrix: &scope_matrix,
                seed,
            };
            let mut deps: Vec<usize> = Vec::new();
            let mut bindings = InputBindings::new();
            for (input_name, text) in &stage.inputs {
                let path = format!("stages.{stage_name}.inputs.{input_name}");
                match self.bind_input(&instances, &by_stage, &scope, text, &path) {
                    Some(binding) => {
                        match &binding {
                            InputBinding::One { instance, .. } => deps.push(*instance),
                            InputBinding::Many { instances: ups, .. } => deps.extend(ups),
                        }
                        bindings.insert(input_name.clone(), binding);
                    }
                    None => continue,
                }
            }
            self.check_input_names(&instances[i], &bindings, &stage.inputs);
            for (n, need) in stage.needs.iter().enumerate() {
                let path = format!("stages.{stage_name}.needs.{n}");
                if let Some(ups) = self.bind_need(&instances, &by_stage, &scope, need, &path) {
                    deps.extend(ups);
                }
            }
            deps.sort_unstable();
            deps.dedup();
            instances[i].inputs = bindings;
            instances[i].deps = deps;
        }
        instances
    }

    /// The cartesian product of the `foreach` lists, in key order (first key varies slowest).
    fn matrix(
        &mut self,
        stage_name: &str,
        foreach: &IndexMap<String, Value>,
    ) -> Option<Vec<IndexMap<String, Value>>> {
        let vars = &self.source.spec.vars;
        let empty = IndexMap::new();
        let scope = Scope {
            vars,
            matrix: &empty,
            seed: self.source.spec.seed,
        };
        let mut combos: Vec<IndexMap<String, Value>> = vec![IndexMap::new()];
        let mut ok = true;
        for (key, raw) in foreach {
            let path = format!("stages.{stage_name}.foreach.{key}");
            let value = match spec::interpolate(raw, &scope) {
                Ok(v) => v,
                Err(e) => {
                    self.diagnostics
                        .push(self.source.at_value(&path, e.message, e.help));
                    ok = false;
                    continue;
                }
            };
            let items = match value {
                Value::Sequence(items) if !items.is_empty() => items,
                _ => {
                    self.diagnostics.push(self.source.at_value(
                        &path,
                        format!("`foreach.{key}` of stage `{stage_name}` must be a non-empty list"),
                        Some(format!(
                            "write e.g. `{key}: [a, b]` or `{key}: ${{vars.NAME}}` naming a list"
                        )),
                    ));
                    ok = false;
                    continue;
                }
            };
            if let Some(bad) = items
                .iter()
                .position(|v| spec::scalar_text(v).is_some_and(|t| t.is_empty()))
            {
                self.diagnostics.push(self.source.at_value(
                    &format!("{path}.{bad}"),
                    format!("`foreach.{key}` values must not be empty text"),
                    Some("an instance needs a name: give the value some text".into()),
                ));
                ok = false;
                continue;
            }
            if let Some(bad) = items.iter().position(|v| spec::scalar_text(v).is_none()) {
                self.diagnostics.push(self.source.at_value(
                    &format!("{path}.{bad}"),
                    format!("`foreach.{key}` values must be scalars (text, numbers, booleans)"),
                    None,
                ));
                ok = false;
                continue;
            }
            combos = combos
                .into_iter()
                .flat_map(|combo| {
                    items.iter().map(move |item| {
                        let mut next = combo.clone();
                        next.insert(key.clone(), item.clone());
                        next
                    })
                })
                .collect();
        }
        // Each instance keeps its combination; grown one insert at a time, a one-entry map
        // held room for four.
        for combo in &mut combos {
            combo.shrink_to_fit();
        }
        ok.then_some(combos)
    }

    /// Hashes the project files a stage reads; a missing one is a diagnostic.
    fn hash_files(&mut self, stage: &str, files: &[String]) -> Vec<ExternalFile> {
        if files.is_empty() {
            return Vec::new();
        }
        let dir = project_dir(&self.source.path);
        let mut out = Vec::new();
        for relative in files {
            let path = dir.join(relative);
            match crate::store::hash_file_parallel(&path) {
                Ok((hash, _)) => out.push(ExternalFile {
                    relative: relative.clone(),
                    hash: hash.to_hex().to_string(),
                }),
                Err(e) => self.diagnostics.push(self.source.at_key(
                    &format!("stages.{stage}.with"),
                    format!("stage `{stage}` reads `{relative}`, which cannot be read: {e}"),
                    Some(format!(
                        "paths are relative to the pipeline file's directory ({})",
                        dir.display()
                    )),
                )),
            }
        }
        out
    }

    fn param_diagnostic(&mut self, stage: &str, kind: &str, instance: &str, error: ParamError) {
        let base = format!("stages.{stage}.with");
        let d = match error {
            ParamError::Unknown {
                field,
                suggestion,
                known,
            } => self.source.at_key(
                &format!("{base}.{field}"),
                format!("unknown parameter `{field}` for plugin `{kind}` in stage `{stage}`"),
                Some(match suggestion {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("parameters of `{kind}`: {}", known.join(", ")),
                }),
            ),
            ParamError::Missing { field } => self.source.at_key(
                &format!("stages.{stage}.uses"),
                format!("missing parameter `{field}` for plugin `{kind}` in stage `{stage}`"),
                Some(format!(
                    "add `{field}: ...` under `with:` (`pipe plugins` describes it)"
                )),
            ),
            ParamError::Invalid { field, message } => {
                let at = if field.is_empty() {
                    base.clone()
                } else {
                    format!("{base}.{field}")
                };
                let what = if field.is_empty() {
                    "parameters".to_string()
                } else {
                    format!("parameter `{field}`")
                };
                let instance_note = if instance == stage {
                    String::new()
                } else {
                    format!(" (instance `{instance}`)")
                };
                self.source.at_value(
                    &at,
                    format!("invalid {what} for plugin `{kind}` in stage `{stage}`{instance_note}: {message}"),
                    Some("`pipe plugins` lists each parameter with its type".into()),
                )
            }
        };
        self.diagnostics.push(d);
    }

    fn check_input_names(
        &mut self,
        instance: &Instance,
        bindings: &InputBindings,
        declared: &IndexMap<String, String>,
    ) {
        let stage = &instance.stage;
        for name in declared.keys() {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                self.diagnostics.push(self.source.at_key(
                    &format!("stages.{stage}.inputs.{name}"),
                    format!(
                        "input name `{name}` of stage `{stage}` must use letters, digits and `_`"
                    ),
                    Some("input names become environment variables (`PIPE_IN_NAME`)".into()),
                ));
            }
        }
        let mut variables: HashMap<String, &str> = HashMap::new();
        for name in declared.keys() {
            let variable = format!("PIPE_IN_{}", name.to_ascii_uppercase());
            if let Some(first) = variables.get(&variable) {
                self.diagnostics.push(self.source.at_key(
                    &format!("stages.{stage}.inputs.{name}"),
                    format!("inputs `{first}` and `{name}` of stage `{stage}` would both be `${variable}`"),
                    Some("input names become upper-case environment variables; rename one of them".into()),
                ));
            } else {
                variables.insert(variable, name);
            }
        }
        let InputSpec::Named(expected) = instance.plugin.inputs() else {
            return;
        };
        let kind = instance.plugin.kind();
        for name in declared.keys() {
            match expected.iter().find(|e| e.name == name) {
                None => {
                    let suggestion = spec::suggest(name, expected.iter().map(|e| e.name));
                    self.diagnostics.push(self.source.at_key(
                        &format!("stages.{stage}.inputs.{name}"),
                        format!("plugin `{kind}` has no input `{name}` (stage `{stage}`)"),
                        Some(match suggestion {
                            Some(s) => format!("did you mean `{s}`?"),
                            None => format!(
                                "inputs of `{kind}`: {}",
                                expected.iter().map(|e| e.name).collect::<Vec<_>>().join(", ")
                            ),
                        }),
                    ));
                }
                Some(decl) => {
                    if let Some(InputBinding::Many { .. }) = bindings.get(name.as_str()) {
                        if !decl.fan_in {
                            self.diagnostics.push(self.source.at_value(
                                &format!("stages.{stage}.inputs.{name}"),
                                format!("input `{name}` of plugin `{kind}` takes one artifact, not a fan-in"),
                                Some("name one instance, e.g. `STAGE[value].OUTPUT`".into()),
                            ));
                        }
                    }
                }
            }
        }
        for decl in expected.iter().filter(|d| d.required) {
            if !declared.contains_key(decl.name) {
                self.diagnostics.push(self.source.at_key(
                    &format!("stages.{stage}.uses"),
                    format!(
                        "stage `{stage}` (plugin `{kind}`) needs input `{}`: {}",
                        decl.name, decl.about
                    ),
                    Some(format!("add `inputs: {{{}: STAGE.OUTPUT}}`", decl.name)),
                ));
            }
        }
    }
}

/// The absolute directory of the pipeline file.
fn project_dir(file: &Path) -> PathBuf {
    let dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

/// The instance DAG and a topological order, or one cycle (instance indices).
/// The instance graph and a topological order of its indices.
type Ordered = (DiGraph<usize, ()>, Vec<usize>);

fn build_graph(instances: &[Instance]) -> Result<Ordered, Vec<usize>> {
    let mut graph = DiGraph::with_capacity(instances.len(), instances.len());
    let nodes: Vec<NodeIndex> = instances.iter().map(|i| graph.add_node(i.index)).collect();
    for instance in instances {
        for &dep in &instance.deps {
            graph.add_edge(nodes[dep], nodes[instance.index], ());
        }
    }
    // Kahn's algorithm, always taking the lowest ready index: a stable order that follows the
    // file wherever dependencies allow.
    let mut indegree: Vec<usize> = instances.iter().map(|i| i.deps.len()).collect();
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); instances.len()];
    for instance in instances {
        for &dep in &instance.deps {
            dependents[dep].push(instance.index);
        }
    }
    let mut ready: std::collections::BTreeSet<usize> =
        (0..instances.len()).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(instances.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &dependents[i] {
            indegree[d] -= 1;
            if indegree[d] == 0 {
                ready.insert(d);
            }
        }
    }
    if order.len() == instances.len() {
        Ok((graph, order))
    } else {
        Err(find_cycle(&graph))
    }
}

/// One cycle, in dependency order, from the first strongly connected component that has one.
fn find_cycle(graph: &DiGraph<usize, ()>) -> Vec<usize> {
    for component in petgraph::algo::tarjan_scc(graph) {
        let start = component[0];
        let self_loop = graph.contains_edge(start, start);
        if component.len() == 1 && !self_loop {
            continue;
        }
        if self_loop {
            return vec![graph[start]];
        }
        let members: HashSet<NodeIndex> = component.iter().copied().collect();
        // Breadth-first from `start` inside the component until we come back to it.
        let mut parent: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        while let Some(node) = queue.pop_front() {
            for next in graph.neighbors(node) {
                if next == start {
                    let mut path = vec![node];
                    let mut cur = node;
                    while let Some(&p) = parent.get(&cur) {
                        path.push(p);
                        cur = p;
                    }
                    path.reverse();
                    return path.into_iter().map(|n| graph[n]).collect();
                }
                if members.contains(&next) && !parent.contains_key(&next) && next != start {
                    parent.insert(next, node);
                    queue.push_back(next);
                }
            }
        }
        return component.iter().map(|n| graph[*n]).collect();
    }
    Vec::new()
}
