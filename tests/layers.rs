//! The crate's layering, checked: every module of `src/` belongs to one layer, and
//! a layer may use (`crate::...`) only itself and the layers below it. This is
//! what keeps the dependency graph free of cycles between layers (README,
//! "Layout"). The test reads the sources, so a new `use crate::x` that points
//! upward fails here with the file, the line and the two layers.

use std::fs;
use std::path::{Path, PathBuf};

/// Bottom up. A file belongs to the first layer with a matching prefix (paths
/// relative to `src/`, without `.rs`).
const LAYERS: &[(&str, &[&str])] = &[
    // Leaves: the thread's current worker/task, the model-checking shim, the
    // one error type, the CPU's prefetch hints.
    ("context", &["context", "loom", "error", "prefetch"]),
    ("stack", &["stack/"]),
    // The task header, its state machine, its end, task-locals, per-task thread
    // state; knows no worker, no timer, no reactor.
    (
        "task core",
        &[
            "task/raw",
            "task/state",
            "task/local",
            "task/thread_state",
            "task/body",
            "task/header",
            "task/wait_reason",
            "task/current",
            "task/reported",
            "task/panic_hook",
            "task/unparker",
            "task/schedule",
        ],
    ),
    ("timer", &["timer/"]),
    // Parking the current task or thread, cancellation, cancel scopes.
    ("park", &["park", "cancel", "cancel_scope"]),
    ("io", &["io/"]),
    // Workers and their queues, the blocking pool.
    (
        "scheduler",
        &[
            "runtime/worker",
            "runtime/shared",
            "runtime/idle",
            "runtime/placement",
            "runtime/spawn_slot",
            "runtime/ready_queue",
            "runtime/sched_policy",
            "runtime/registry",
            "runtime/task_pool",
            "runtime/debug",
            "blocking",
        ],
    ),
    // What users call.
    (
        "api",
        &[
            "runtime/",
            "task/",
            "time",
            "sync/",
            "net/",
            "fs",
            "generator",
            "hook/",
        ],
    ),
    ("ffi", &["ffi/"]),
];

/// Not layered: the crate root re-exports everything; the model checks test
/// modules of several layers.
const OUTSIDE: &[&str] = &["lib", "model_check/"];

fn layer_of(module_path: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, prefixes)| {
        prefixes.iter().any(|p| {
            if let Some(dir) = p.strip_suffix('/') {
                module_path == dir || module_path.starts_with(&format!("{dir}/"))
            } else {
                module_path == *p || module_path.starts_with(&format!("{p}/"))
            }
        })
    })
}

/// The source file path (relative, no extension) of a `crate::a::b::c` path:
/// the longest prefix that names a file or a directory's `mod.rs`.
fn target_of(src: &Path, segments: &[&str]) -> Option<String> {
    let mut best = None;
    for n in 1..=segments.len() {
        let rel = segments[..n].join("/");
        if src.join(format!("{rel}.rs")).is_file() || src.join(&rel).join("mod.rs").is_file() {
            best = Some(rel);
        }
    }
    best
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `crate::x::y` path mentioned in a line of code (not in comments), and
/// every `super::x` path, resolved against `parent` (the segments of the
/// file's parent module).
fn crate_paths(line: &str, parent: &[String]) -> Vec<Vec<String>> {
    let code = line.split("//").next().unwrap_or("");
    let mut out = paths_after(code, "crate::", &[]);
    out.extend(paths_after(code, "super::", parent));
    out
}

fn paths_after(code: &str, keyword: &str, base: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find(keyword) {
        let before = &rest[..i];
        let ident_before = before
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$');
        rest = &rest[i + keyword.len()..];
        if ident_before {
            continue; // e.g. `$crate::` or `other_crate::`
        }
        let mut segs: Vec<String> = base.to_vec();
        let mut s = rest;
        loop {
            let end = s
                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                .unwrap_or(s.len());
            if end == 0 {
                break;
            }
            segs.push(s[..end].to_string());
            s = &s[end..];
            match s.strip_prefix("::") {
                Some(r) => s = r,
                None => break,
            }
        }
        // `use crate::{a, b::c}` and `use crate::x::{y, z}`: each group member
        // counts too.
        if let Some(group) = s.strip_prefix('{') {
            let body: String = group.chars().take_while(|&c| c != '}').collect();
            for item in body.split(',') {
                let item = item.trim();
                if item.is_empty() || item == "self" {
                    continue;
                }
                let mut full = segs.clone();
                full.extend(
                    item.split("::")
                        .map(|x| x.split_whitespace().next().unwrap_or("").to_string()),
                );
                out.push(full);
            }
        }
        if segs.len() > base.len() {
            out.push(segs);
        }
    }
    out
}

/// The lines of `text` with their 1-based numbers, a multi-line `use`
/// statement joined into one line (numbered by its first).
fn statements(text: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut open = false;
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        if open {
            out.last_mut().unwrap().1.push_str(code.trim());
        } else {
            out.push((i + 1, code.to_string()));
            let t = code.trim_start();
            open = (t.starts_with("use ")
                || t.starts_with("pub use ")
                || t.starts_with("pub(crate) use "))
                && !code.contains(';');
            continue;
        }
        if code.contains(';') {
            open = false;
        }
    }
    out
}

#[test]
fn no_module_uses_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut checked = 0;
    for file in &files {
        let shown = file.strip_prefix(&src).unwrap().display().to_string();
        let rel = file.strip_prefix(&src).unwrap().with_extension("");
        let mut module = rel.to_string_lossy().replace('\\', "/");
        if let Some(m) = module.strip_suffix("/mod") {
            module = m.to_string();
        }
        if OUTSIDE
            .iter()
            .any(|o| module == *o || o.strip_suffix('/').is_some_and(|d| module.starts_with(d)))
        {
            continue;
        }
        let Some(own) = layer_of(&module) else {
            violations.push(format!("src/{shown} is in no layer: add it to LAYERS"));
            continue;
        };
        checked += 1;
        let text = fs::read_to_string(file).unwrap();
        // Unit tests may reach anywhere.
        let text = text.split("#[cfg(test)]").next().unwrap();
        let parent: Vec<String> = module
            .split('/')
            .map(String::from)
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, p)| p.to_vec())
            .unwrap_or_default();
        for (n, line) in statements(text) {
            for path in crate_paths(&line, &parent) {
                let segs: Vec<&str> = path.iter().map(String::as_str).collect();
                let Some(target) = target_of(&src, &segs) else {
                    continue; // a crate-root item (`crate::spawn`): the facade
                };
                let target = target.strip_suffix("/mod").unwrap_or(&target).to_string();
                let Some(theirs) = layer_of(&target) else {
                    continue;
                };
                if theirs > own {
                    violations.push(format!(
                        "src/{shown}:{}: `crate::{}` ({}) is above {}",
                        n,
                        path.join("::"),
                        LAYERS[theirs].0,
                        LAYERS[own].0
                    ));
                }
            }
        }
    }
    assert!(checked > 50, "only {checked} files checked: is src/ there?");
    assert!(
        violations.is_empty(),
        "{} upward uses:\n{}",
        violations.len(),
        violations.join("\n")
    );
}
