//! House rules and architecture invariants, checked over the source tree and
//! the Cargo manifests: every Rust file opens with a `//!` line; library code
//! prints only in `app/` and `context.rs`; no test is ignored without a
//! reason; the core's top-level modules have no `crate::` cycle; SQL lives
//! only in `taskflow-core/src/store/`; only `taskflow-web` depends on axum,
//! hyper or tower; `taskflow-proto` depends on no TaskFlow crate and no HTTP
//! stack; and no library file is over 800 lines unless `LONG_FILES` says why.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // `tests/ui` holds trybuild cases, which are meant not to compile.
            let trybuild = path.ends_with("ui") && path.parent().is_some_and(|p| p.ends_with("tests"));
            if !path.ends_with("target") && !trybuild {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

fn sources() -> Vec<PathBuf> {
    let root = workspace();
    let mut files = Vec::new();
    for dir in ["taskflow/src", "taskflow-core/src", "taskflow-macros/src", "taskflow-web/src", "examples", "tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 20, "the walk found the sources: {files:?}");
    files
}

/// The Rust files under these workspace folders.
fn files_under(dirs: &[&str]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in dirs {
        rust_files(&workspace().join(dir), &mut files);
    }
    files
}

/// A path as the messages name it: relative to the workspace, with `/`.
fn shown(path: &Path) -> String {
    path.strip_prefix(workspace()).unwrap_or(path).to_string_lossy().replace('\\', "/")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", shown(path)))
}

#[test]
fn every_file_opens_with_a_module_doc() {
    let offenders: Vec<_> = sources()
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
            !(first.starts_with("//!") || first.starts_with("#![doc"))
        })
        .collect();
    assert!(offenders.is_empty(), "files without a leading `//!` line: {offenders:?}");
}

#[test]
fn library_code_does_not_print() {
    let root = workspace();
    let mut files = Vec::new();
    rust_files(&root.join("taskflow/src"), &mut files);
    rust_files(&root.join("taskflow-core/src"), &mut files);
    rust_files(&root.join("taskflow-macros/src"), &mut files);
    let offenders: Vec<_> = files
        .into_iter()
        .filter(|path| !path.components().any(|c| c.as_os_str() == "app") && !path.ends_with("context.rs"))
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            ["println!(", "print!(", "eprintln!(", "dbg!("].iter().any(|m| text.contains(m))
        })
        .collect();
    assert!(offenders.is_empty(), "library files that print: {offenders:?}");
}

#[test]
fn ignored_tests_say_why() {
    let offenders: Vec<_> = sources()
        .into_iter()
        .filter(|path| std::fs::read_to_string(path).unwrap().lines().any(|l| l.trim() == "#[ignore]"))
        .collect();
    assert!(offenders.is_empty(), "`#[ignore]` without a reason: {offenders:?}");
}

// ---- Reading Rust sources -------------------------------------------------

/// A source cut in two: its code, with comments (doc comments too) and the
/// contents of string literals blanked so that neither is mistaken for code,
/// and its string literals, each with the line it starts on. Newlines are
/// kept, so an offset into `code` still has its line.
struct Lexed {
    code: String,
    strings: Vec<(usize, String)>,
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The number of `#`s of a raw string `r#"…"#` starting at `i`, if one does.
fn raw_string_at(chars: &[char], i: usize) -> Option<usize> {
    let before = |k: usize| i.checked_sub(k).map(|p| chars[p]);
    let starts =
        before(1).is_none_or(|c| !is_ident(c)) || (before(1) == Some('b') && before(2).is_none_or(|c| !is_ident(c)));
    if chars[i] != 'r' || !starts {
        return None;
    }
    let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
    (chars.get(i + 1 + hashes) == Some(&'"')).then_some(hashes)
}

/// Splits a Rust source into [`Lexed`] code and strings (a small lexer: line
/// and nested block comments, plain, byte and raw strings, char literals).
fn lex(text: &str) -> Lexed {
    let chars: Vec<char> = text.chars().collect();
    let (mut code, mut strings, mut line, mut i) = (String::with_capacity(text.len()), Vec::new(), 1, 0);
    let blank = |code: &mut String, line: &mut usize, c: char| {
        code.push(if c == '\n' { '\n' } else { ' ' });
        *line += usize::from(c == '\n');
    };
    while i < chars.len() {
        let (c, next) = (chars[i], chars.get(i + 1).copied());
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                blank(&mut code, &mut line, chars[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                let pair = (chars[i], chars.get(i + 1).copied());
                depth += i32::from(pair == ('/', Some('*'))) - i32::from(pair == ('*', Some('/')));
                let width = if matches!(pair, ('/', Some('*')) | ('*', Some('/'))) { 2 } else { 1 };
                for _ in 0..width {
                    blank(&mut code, &mut line, chars[i]);
                    i += 1;
                }
                if depth == 0 {
                    break;
                }
            }
        } else if c == '"' || raw_string_at(&chars, i).is_some() {
            let hashes = raw_string_at(&chars, i);
            let open = if c == '"' { 1 } else { 2 + hashes.unwrap_or(0) };
            code.extend(&chars[i..i + open]);
            i += open;
            let (start, mut content) = (line, String::new());
            let close: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes.unwrap_or(0))).collect();
            while i < chars.len() && !chars[i..].starts_with(&close) {
                let escaped = hashes.is_none() && chars[i] == '\\' && i + 1 < chars.len();
                for _ in 0..if escaped { 2 } else { 1 } {
                    content.push(chars[i]);
                    blank(&mut code, &mut line, chars[i]);
                    i += 1;
                }
            }
            strings.push((start, content));
            let end = (i + close.len()).min(chars.len());
            code.extend(&chars[i..end]);
            i = end;
        } else if c == '\'' && (next == Some('\\') || chars.get(i + 2) == Some(&'\'')) {
            // A char literal (a lifetime has no closing quote): `'"'` must not open a string.
            let mut j = if next == Some('\\') { i + 3 } else { i + 2 };
            while j < chars.len() && chars[j] != '\'' {
                j += 1;
            }
            while i <= j.min(chars.len() - 1) {
                blank(&mut code, &mut line, chars[i]);
                i += 1;
            }
        } else {
            code.push(c);
            line += usize::from(c == '\n');
            i += 1;
        }
    }
    Lexed { code, strings }
}

/// The source without its unit tests: what follows a line `#[cfg(test)]` at
/// column 0 followed by `mod tests` is left out. Tests may reach anything.
fn without_tests(text: &str) -> &str {
    let mut offset = 0;
    let mut lines = text.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        if line.trim_end() == "#[cfg(test)]" && lines.peek().is_some_and(|next| next.starts_with("mod tests")) {
            return &text[..offset];
        }
        offset += line.len();
    }
    text
}

fn line_of(code: &str, offset: usize) -> usize {
    code[..offset].matches('\n').count() + 1
}

// ---- Layers of the core -----------------------------------------------------

/// The first name of every `crate::` path in the code, with its line:
/// `crate::store::Error` gives `store`, `use crate::{run::Run, task}` gives
/// `run` and `task`.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let leading = |s: &str| s.trim_start().chars().take_while(|&c| is_ident(c)).collect::<String>();
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if code[..at].chars().next_back().is_some_and(is_ident) {
            continue;
        }
        let line = line_of(code, at);
        let rest = code[at + "crate::".len()..].trim_start();
        let Some(group) = rest.strip_prefix('{') else {
            found.push((line, leading(rest)));
            continue;
        };
        let (mut depth, mut item) = (0, String::new());
        for c in group.chars() {
            match c {
                '{' => depth += 1,
                '}' | ',' if depth == 0 => {
                    found.push((line, leading(&item)));
                    item.clear();
                    if c == '}' {
                        break;
                    }
                    continue;
                }
                '}' => depth -= 1,
                _ => {}
            }
            item.push(c);
        }
    }
    found.retain(|(_, name)| !name.is_empty());
    found
}

/// The modules `lib.rs` declares with `mod x;` or `pub mod x;` (a file
/// `x.rs` or a folder `x/`), and the items it re-exports from each
/// (`pub use run::ExecutorKind;` makes `crate::ExecutorKind` name `run`).
fn top_level_modules(lib: &str) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let mut modules = BTreeSet::new();
    for line in lib.lines() {
        let decl = line.strip_prefix("pub ").unwrap_or(line);
        let decl = decl.strip_prefix("(crate) ").unwrap_or(decl);
        if let Some(name) = decl.strip_prefix("mod ").and_then(|rest| rest.strip_suffix(';')) {
            modules.insert(name.trim().to_owned());
        }
    }
    let mut reexports = BTreeMap::new();
    for line in lib.lines() {
        let Some(path) = line.strip_prefix("pub use ").and_then(|rest| rest.strip_suffix(';')) else { continue };
        let Some((module, rest)) = path.split_once("::") else { continue };
        if !modules.contains(module) {
            continue;
        }
        let names = rest.rsplit_once('{').map_or(rest, |(_, group)| group.trim_end_matches('}'));
        for name in names.split(',') {
            let name = name.rsplit(" as ").next().unwrap_or(name);
            let name = name.rsplit("::").next().unwrap_or(name).trim();
            reexports.insert(name.to_owned(), module.to_owned());
        }
    }
    (modules, reexports)
}

/// For each top-level module of the core: the other modules it names, each
/// with the first place that does (`file:line`).
fn core_module_graph() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = workspace().join("taskflow-core/src");
    let (modules, reexports) = top_level_modules(&read(&src.join("lib.rs")));
    assert!(modules.len() > 5, "found the core's modules in lib.rs: {modules:?}");
    let mut graph = BTreeMap::new();
    for module in &modules {
        let mut files: Vec<PathBuf> = vec![src.join(format!("{module}.rs"))];
        files.retain(|f| f.exists());
        if src.join(module).is_dir() {
            rust_files(&src.join(module), &mut files);
        }
        let edges: &mut BTreeMap<String, String> = graph.entry(module.clone()).or_default();
        for file in files {
            let text = read(&file);
            for (line, name) in crate_paths(&lex(without_tests(&text)).code) {
                let target = if modules.contains(&name) { Some(&name) } else { reexports.get(&name) };
                if let Some(target) = target.filter(|t| *t != module) {
                    edges.entry(target.clone()).or_insert_with(|| format!("{}:{line}", shown(&file)));
                }
            }
        }
    }
    graph
}

/// Every elementary cycle of the graph, each once, as its nodes from its
/// smallest one (DFS from each start through larger nodes only).
fn cycles(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Vec<String>> {
    fn walk<'g>(
        graph: &'g BTreeMap<String, BTreeMap<String, String>>,
        path: &mut Vec<&'g str>,
        out: &mut Vec<Vec<String>>,
    ) {
        let (start, last) = (path[0], path[path.len() - 1]);
        for next in graph.get(last).into_iter().flat_map(BTreeMap::keys) {
            if next == start {
                out.push(path.iter().map(|s| (*s).to_owned()).collect());
            } else if next.as_str() > start && !path.contains(&next.as_str()) {
                path.push(next);
                walk(graph, path, out);
                path.pop();
            }
        }
    }
    let mut out = Vec::new();
    for start in graph.keys() {
        walk(graph, &mut vec![start], &mut out);
    }
    out
}

/// The core is built in layers (listed in `lib.rs`), each naming only those
/// above it; a cycle between two top-level modules means neither can be
/// understood, tested or split off without the other.
#[test]
fn core_modules_have_no_use_cycle() {
    let graph = core_module_graph();
    let edges: usize = graph.values().map(BTreeMap::len).sum();
    assert!(edges > 10, "the scan found the modules' `crate::` paths: {graph:#?}");
    let mut found = cycles(&graph);
    // Shortest first: one upward path usually closes many cycles, and the
    // shortest ones name it most plainly.
    found.sort_by_key(Vec::len);
    let shown: Vec<String> = found
        .iter()
        .take(MAX_CYCLES_SHOWN)
        .map(|cycle| {
            let hops: Vec<String> = (0..cycle.len())
                .map(|i| {
                    let (from, to) = (&cycle[i], &cycle[(i + 1) % cycle.len()]);
                    format!("{from} → {to} at {}", graph[from][to])
                })
                .collect();
            format!("{} → {}\n      ({})", cycle.join(" → "), cycle[0], hops.join("; "))
        })
        .collect();
    let more = found.len().saturating_sub(MAX_CYCLES_SHOWN);
    assert!(
        found.is_empty(),
        "{} `crate::` cycles between taskflow-core's top-level modules; break each by moving what both \
         need into the lower layer (see the layer list in lib.rs) or by dropping the upward `crate::` path:\n  {}{}",
        found.len(),
        shown.join("\n  "),
        if more > 0 { format!("\n  … and {more} longer cycles") } else { String::new() }
    );
}

/// How many cycles the message spells out.
const MAX_CYCLES_SHOWN: usize = 10;

// ---- SQL --------------------------------------------------------------------

/// SQL statements, as they open inside a string literal.
const SQL_KEYWORDS: &[&str] = &[
    "SELECT ",
    "INSERT INTO",
    "UPDATE ",
    "DELETE FROM",
    "CREATE TABLE",
    "CREATE INDEX",
    "CREATE UNIQUE INDEX",
    "ALTER TABLE",
    "DROP TABLE",
    "PRAGMA ",
];

/// The lines of the string literals of a source (outside comments and unit
/// tests) that hold an SQL keyword as a word of their own.
fn sql_lines(text: &str) -> Vec<usize> {
    let mut lines = Vec::new();
    for (start, content) in lex(without_tests(text)).strings {
        for keyword in SQL_KEYWORDS {
            for (at, _) in content.match_indices(keyword) {
                if !content[..at].chars().next_back().is_some_and(is_ident) {
                    lines.push(start + content[..at].matches('\n').count());
                }
            }
        }
    }
    lines.sort_unstable();
    lines.dedup();
    lines
}

/// The store is the one place that knows the schema: SQL anywhere else ties
/// that code to one database and dodges the store's conformance tests.
#[test]
fn only_the_store_holds_sql() {
    let store = workspace().join("taskflow-core/src/store");
    let mut offenders = Vec::new();
    let in_store: usize = files_under(&["taskflow-core/src/store"]).iter().map(|f| sql_lines(&read(f)).len()).sum();
    assert!(in_store > 10, "the scan finds the store's own SQL");
    for file in files_under(&["taskflow-core/src", "taskflow/src", "taskflow-web/src"]) {
        if !file.starts_with(&store) {
            offenders.extend(sql_lines(&read(&file)).into_iter().map(|line| format!("{}:{line}", shown(&file))));
        }
    }
    assert!(
        offenders.is_empty(),
        "SQL outside taskflow-core/src/store/; move the query behind a `Store` method:\n  {}",
        offenders.join("\n  ")
    );
}

// ---- Manifests --------------------------------------------------------------

/// The HTTP stack, which only the control plane may build on.
const HTTP_CRATES: &[&str] = &["axum", "hyper", "hyper-util", "tower"];

/// The crates a manifest depends on to build or run (every `dependencies`
/// table, target-specific ones too, but not `dev-dependencies`), read line by
/// line: `name = …`, `name.workspace = true`, `[dependencies.name]`, and the
/// real name of a `package = "…"` rename.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut deps = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines().map(str::trim) {
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_end_matches(']').trim();
            let table = header.rsplit_once('.').map_or(header, |(_, last)| last);
            let parent = header.rsplit_once('.').map(|(first, _)| first.rsplit('.').next().unwrap_or(first));
            in_deps = matches!(table, "dependencies" | "build-dependencies");
            if matches!(parent, Some("dependencies" | "build-dependencies")) {
                deps.push(table.trim_matches('"').to_owned());
            }
            continue;
        }
        if !in_deps || line.starts_with('#') || !line.contains('=') {
            continue;
        }
        let key = line.split(['=', '.']).next().unwrap_or_default().trim().trim_matches('"');
        let renamed = line.split_once("package").and_then(|(_, rest)| rest.split('"').nth(1));
        deps.push(renamed.unwrap_or(key).to_owned());
    }
    deps
}

/// The workspace members, from `members = [ … ]` in the root manifest.
fn workspace_members() -> Vec<String> {
    let root = read(&workspace().join("Cargo.toml"));
    let list = root
        .split_once("members")
        .and_then(|(_, rest)| rest.split_once('['))
        .and_then(|(_, rest)| rest.split_once(']'));
    let members: Vec<String> = list
        .expect("the root Cargo.toml lists `members = [ … ]`")
        .0
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    assert!(members.contains(&"taskflow-core".to_owned()), "read the workspace members: {members:?}");
    members
}

/// Serving HTTP is the control plane's job: the library and the facade stay
/// usable (and buildable) without an HTTP stack.
#[test]
fn only_the_control_plane_depends_on_axum() {
    let exempt = ["taskflow-web", "bench", "tests", "examples", "tests/user-crate"];
    let mut members = workspace_members();
    if workspace().join("taskflow-proto").is_dir() && !members.iter().any(|m| m == "taskflow-proto") {
        members.push("taskflow-proto".to_owned());
    }
    let mut offenders = Vec::new();
    for member in members.iter().filter(|m| !exempt.contains(&m.as_str())) {
        let deps = dependencies(&read(&workspace().join(member).join("Cargo.toml")));
        for dep in deps.iter().filter(|d| HTTP_CRATES.contains(&d.as_str())) {
            offenders.push(format!("{member}/Cargo.toml depends on `{dep}`"));
        }
    }
    for file in files_under(&["taskflow-core/src"]) {
        let code = lex(&read(&file)).code;
        for path in ["axum::", "hyper::", "hyper_util::", "tower::"] {
            for (at, _) in code.match_indices(path) {
                if !code[..at].chars().next_back().is_some_and(is_ident) {
                    offenders.push(format!("{}:{} names `{path}`", shown(&file), line_of(&code, at)));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "only taskflow-web may use axum, hyper or tower (dev-dependencies are fine); move the HTTP code \
         into taskflow-web behind a port:\n  {}",
        offenders.join("\n  ")
    );
}

/// What is wrong with `taskflow-proto`'s manifest: the wire protocol is what
/// every side shares, so it depends on no TaskFlow crate and no HTTP stack.
fn check_proto_manifest(text: &str) -> Vec<String> {
    dependencies(text)
        .into_iter()
        .filter(|dep| dep == "taskflow" || dep.starts_with("taskflow-") || dep.starts_with("taskflow_") || HTTP_CRATES.contains(&dep.as_str()))
        .map(|dep| format!("taskflow-proto must not depend on `{dep}`: the protocol sits below every TaskFlow crate and any transport"))
        .collect()
}

#[test]
fn the_proto_check_tells_good_manifests_from_bad() {
    let good = "[package]\nname = \"taskflow-proto\"\n\n[dependencies]\nserde.workspace = true\nserde_json = \"1\"\n\n\
                [dev-dependencies]\ntaskflow-core.workspace = true\naxum = \"0.8\"\n";
    assert_eq!(check_proto_manifest(good), Vec::<String>::new());
    let bad = "[package]\nname = \"taskflow-proto\"\n\n[dependencies]\ntaskflow-core.workspace = true\n\
               axum = { version = \"0.8\", default-features = false }\nserde = \"1\"\n\n\
               [target.'cfg(unix)'.dependencies]\nweb = { package = \"hyper\", version = \"1\" }\n";
    let problems = check_proto_manifest(bad);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    for dep in ["`taskflow-core`", "`axum`", "`hyper`"] {
        assert!(problems.iter().any(|p| p.contains(dep)), "{dep} is named in {problems:#?}");
    }
}

#[test]
fn the_protocol_crate_depends_on_no_taskflow_crate() {
    let manifest = workspace().join("taskflow-proto/Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| {
        panic!("the crate taskflow-proto is expected, with the wire protocol: {}: {e}", shown(&manifest))
    });
    let problems = check_proto_manifest(&text);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---- File lengths ---------------------------------------------------------

/// The longest a library source file may be.
const MAX_LINES: usize = 800;

/// Library files allowed over [`MAX_LINES`], each with why. An entry must stay
/// true: the test fails once the file is gone or short enough.
const LONG_FILES: &[(&str, &str)] = &[];

/// A file past a few hundred lines holds more than one concept; split it into
/// a folder of modules, one concept each.
#[test]
fn library_files_stay_short() {
    let mut problems = Vec::new();
    let files = files_under(&["taskflow-core/src", "taskflow/src", "taskflow-web/src", "taskflow-macros/src"]);
    for file in &files {
        let (name, lines) = (shown(file), read(file).lines().count());
        if lines > MAX_LINES && !LONG_FILES.iter().any(|(long, _)| *long == name) {
            problems.push(format!("{name} has {lines} lines (> {MAX_LINES}): split it into a folder of modules"));
        }
    }
    for (long, reason) in LONG_FILES {
        let path = workspace().join(long);
        match std::fs::read_to_string(&path) {
            Err(_) => problems.push(format!("{long} is in LONG_FILES ({reason}) but is gone: drop it from the list")),
            Ok(text) if text.lines().count() <= MAX_LINES => problems.push(format!(
                "{long} is in LONG_FILES ({reason}) but has {} lines (≤ {MAX_LINES}): drop it from the list",
                text.lines().count()
            )),
            Ok(_) => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
