//! Resource files → resources, with every problem located at file, line and column.
//!
//! Files are YAML (multi-document) or JSON. Each document is parsed on its own so
//! that a problem can name the document's line even when the parser could not; the
//! engine's validation errors (resource + field) are then located by finding the
//! field's key inside that resource's document.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use switchyard_engine::{ConfigError, Index, PluginConfig, Resource, Settings};

/// A resource and where it was written.
#[derive(Debug, Clone)]
pub struct Located {
    pub resource: Resource,
    pub file: PathBuf,
    /// 1-based line of the document's first line.
    pub line: usize,
    /// The document's text, to locate fields in.
    pub text: String,
}

/// One problem with a resource file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub reason: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if let Some(r) = &self.resource {
            write!(f, "{r}: ")?;
        }
        if let Some(field) = &self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.reason)
    }
}

/// Problems found while loading; nothing of the input is applied.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct LoadErrors(pub Vec<LoadError>);

/// The resource files of `path`: the file itself, or every `*.yaml`, `*.yml` and
/// `*.json` file of a directory, sorted.
pub fn resource_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Loads a file, or every resource file of a directory (see [`resource_files`]).
pub fn load_path(path: &Path) -> Result<Vec<Located>, LoadErrors> {
    let files = resource_files(path).map_err(|e| io_error(path, &e))?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| io_error(&file, &e))?;
        match parse_text(&file, &text) {
            Ok(mut docs) => out.append(&mut docs),
            Err(mut e) => errors.append(&mut e.0),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(LoadErrors(errors))
    }
}

fn io_error(path: &Path, e: &std::io::Error) -> LoadErrors {
    LoadErrors(vec![LoadError {
        file: path.display().to_string(),
        line: 0,
        column: 0,
        resource: None,
        field: None,
        reason: e.to_string(),
    }])
}

/// Splits YAML text into documents: (first line, text). JSON is one document, or
/// an array of resources.
fn documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut start = 1;
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            if !current.trim().is_empty() {
                docs.push((start, std::mem::take(&mut current)));
            }
            current.clear();
            start = i + 2;
            continue;
        }
        if current.is_empty() && line.trim().is_empty() {
            start = i + 2;
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() && !current.lines().all(|l| l.trim_start().starts_with('#')) {
        docs.push((start, current));
    }
    docs
}

/// Parses one file's text (YAML documents or JSON).
pub fn parse_text(file: &Path, text: &str) -> Result<Vec<Located>, LoadErrors> {
    let name = file.display().to_string();
    let is_json = file.extension().and_then(|e| e.to_str()) == Some("json");
    let mut out = Vec::new();
    let mut errors = Vec::new();
    if is_json {
        let parsed: Result<Vec<Resource>, _> = serde_json::from_str::<serde_json::Value>(text)
            .and_then(|v| match v {
                serde_json::Value::Array(_) => serde_json::from_value(v),
                other => serde_json::from_value(other).map(|r| vec![r]),
            });
        match parsed {
            Ok(resources) => {
                let array = text.trim_start().starts_with('[');
                out.extend(resources.into_iter().enumerate().map(|(i, resource)| {
                    // An array's resource is located from its own element on, so
                    // that its fields are not found in an earlier resource.
                    let start = if array { element(text, 0, i) } else { None };
                    let (line, text) = match start {
                        Some(at) => {
                            let (line, column) = position(text, at);
                            (line, format!("{}{}", " ".repeat(column - 1), &text[at..]))
                        }
                        None => (1, text.to_string()),
                    };
                    Located {
                        resource,
                        file: file.to_path_buf(),
                        line,
                        text,
                    }
                }))
            }
            Err(e) => errors.push(LoadError {
                file: name,
                line: e.line().max(1),
                column: e.column().max(1),
                resource: None,
                field: None,
                reason: e.to_string(),
            }),
        }
    } else {
        for (start, doc) in documents(text) {
            match serde_saphyr::from_str::<Resource>(&doc) {
                Ok(resource) => out.push(Located {
                    resource,
                    file: file.to_path_buf(),
                    line: start,
                    text: doc,
                }),
                Err(e) => errors.push(yaml_error(&name, start, &doc, &e)),
            }
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(LoadErrors(errors))
    }
}

/// Locates a YAML parse error: the parser's own position when it has one, else
/// the line of the key the message names (serde names unknown fields in backticks).
fn yaml_error(file: &str, start: usize, doc: &str, e: &serde_saphyr::Error) -> LoadError {
    let message = e.to_string();
    let reason = message.lines().next().unwrap_or("").to_string();
    let named_key = message
        .split('`')
        .nth(1)
        .and_then(|key| find_key(doc, &[key]));
    let (line, column) = match (e.location(), named_key) {
        (_, Some(pos)) => pos,
        (Some(loc), None) => (loc.line() as usize, loc.column() as usize),
        (None, None) => (1, 1),
    };
    let resource = doc_resource_id(doc);
    LoadError {
        file: file.to_string(),
        line: start + line - 1,
        column,
        resource,
        field: None,
        reason,
    }
}

/// `Kind/name` from a document that may not have parsed.
fn doc_resource_id(doc: &str) -> Option<String> {
    let value: serde_json::Value = serde_saphyr::from_str(doc).ok()?;
    Some(format!(
        "{}/{}",
        value.get("kind")?.as_str()?,
        value.get("metadata")?.get("name")?.as_str()?
    ))
}

/// (line, column), 1-based, of the field `path` in `doc`: each part is a key
/// looked for after the previous one, and `name[i]` moves on to the start of the
/// `i`-th element of that key's block (`- `) or flow (`[…]`) sequence, so that
/// `routes[2].options` is the third route's `options`. A part that is not found
/// is skipped; the deepest part found is the answer.
fn find_key(doc: &str, path: &[&str]) -> Option<(usize, usize)> {
    let mut found = None;
    let mut from = 0;
    for part in path {
        let mut pieces = part.split('[');
        let bare = pieces.next().unwrap_or(part);
        if !bare.is_empty() {
            let Some((key_at, value_at)) = key_from(doc, bare, from) else {
                continue;
            };
            found = Some(key_at);
            from = value_at;
        }
        for index in pieces {
            let Some(i) = index.strip_suffix(']').and_then(|i| i.parse().ok()) else {
                break;
            };
            let Some(at) = element(doc, from, i) else {
                break;
            };
            found = Some(at);
            from = at;
        }
    }
    found.map(|at| position(doc, at))
}

/// 1-based (line, column) of a byte offset.
fn position(doc: &str, at: usize) -> (usize, usize) {
    let before = &doc[..at];
    let line_start = before.rfind('\n').map_or(0, |p| p + 1);
    (before.matches('\n').count() + 1, at - line_start + 1)
}

/// The first key `key` (`key:` or `"key":`) at or after byte `from`: the offsets
/// of the key and of what follows its colon.
fn key_from(doc: &str, key: &str, from: usize) -> Option<(usize, usize)> {
    let plain = format!("{key}:");
    let quoted = format!("\"{key}\"");
    (from..doc.len())
        .filter(|&at| doc.is_char_boundary(at))
        .find_map(|at| {
            let rest = &doc[at..];
            let after = if rest.starts_with(&plain) {
                let after = at + plain.len();
                let next = doc[after..].chars().next();
                next.is_none_or(char::is_whitespace).then_some(after)?
            } else if rest.starts_with(&quoted) {
                let after = at + quoted.len();
                let gap = doc[after..].len() - doc[after..].trim_start().len();
                doc[after + gap..]
                    .starts_with(':')
                    .then_some(after + gap + 1)?
            } else {
                return None;
            };
            let before = doc[..at].chars().next_back();
            let boundary =
                before.is_none_or(|c| c.is_whitespace() || matches!(c, '{' | ',' | '-' | '"'));
            boundary.then_some((at, after))
        })
}

/// The byte offset of the `i`-th element of the sequence that starts at or
/// after `from` (blanks and comments skipped): a block sequence (`- ` items at
/// one indentation) or a flow sequence (`[a, {b: c}, …]`, JSON included).
fn element(doc: &str, from: usize, i: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let rest = &doc[at..];
        let trimmed = rest.trim_start();
        at += rest.len() - trimmed.len();
        if trimmed.starts_with('#') {
            at += trimmed.find('\n').unwrap_or(trimmed.len());
        } else {
            break;
        }
    }
    if doc[at..].starts_with('[') {
        return flow_element(doc, at + 1, i);
    }
    if !doc[at..].starts_with('-') {
        return None;
    }
    let line_start = doc[..at].rfind('\n').map_or(0, |p| p + 1);
    let indent = at - line_start;
    let mut count = 0;
    let mut offset = line_start;
    for line in doc[line_start..].split_inclusive('\n') {
        let body = line.trim_start_matches(' ');
        let line_indent = line.len() - body.len();
        let content = body.trim_end();
        let is_item = content == "-" || body.starts_with("- ");
        if !content.is_empty() && !content.starts_with('#') {
            if line_indent < indent || (line_indent == indent && !is_item) {
                return None;
            }
            if line_indent == indent {
                if count == i {
                    return Some(offset + indent);
                }
                count += 1;
            }
        }
        offset += line.len();
    }
    None
}

/// The `i`-th element of a flow sequence whose `[` ends just before `from`.
fn flow_element(doc: &str, from: usize, i: usize) -> Option<usize> {
    let (mut count, mut depth) = (0, 0usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut expecting = true;
    for (offset, c) in doc[from..].char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' && q == '"' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        if expecting && !c.is_whitespace() {
            if c == ']' && depth == 0 {
                return None;
            }
            if count == i {
                return Some(from + offset);
            }
            expecting = false;
        }
        match c {
            '"' | '\'' => quote = Some(c),
            '[' | '{' => depth += 1,
            ']' | '}' if depth == 0 => return None,
            ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                count += 1;
                expecting = true;
            }
            _ => {}
        }
    }
    None
}

/// Loads resource files and compiles them with default settings.
pub fn load_and_compile(path: &Path) -> Result<(Vec<Located>, Index), LoadErrors> {
    let docs = load_path(path)?;
    let index = compile(&docs, Settings::default())?;
    Ok((docs, index))
}

/// Compiles located resources with the engine, locating each validation error.
pub fn compile(docs: &[Located], settings: Settings) -> Result<Index, LoadErrors> {
    let config = PluginConfig {
        settings,
        resources: docs.iter().map(|d| d.resource.clone()).collect(),
    };
    // The Canaries' progressive-delivery plans are the control plane's to check.
    let progressive = crate::progressive::spec::check(&config.resources);
    let compiled = match (Index::compile(&config), progressive.is_empty()) {
        (Ok(_), false) => Err(ConfigError::Invalid(progressive)),
        (Err(ConfigError::Invalid(mut errors)), _) => {
            errors.extend(progressive);
            Err(ConfigError::Invalid(errors))
        }
        (other, _) => other,
    };
    match compiled {
        Ok(index) => Ok(index),
        Err(ConfigError::Syntax {
            line,
            column,
            message,
        }) => Err(LoadErrors(vec![LoadError {
            file: "<config>".into(),
            line,
            column,
            resource: None,
            field: None,
            reason: message,
        }])),
        Err(ConfigError::Invalid(errors)) => Err(LoadErrors(
            errors
                .into_iter()
                .map(|e| {
                    let doc = docs.iter().find(|d| d.resource.id() == e.resource);
                    let (file, line, column) = match doc {
                        Some(d) => {
                            let path: Vec<&str> = e.field.split('.').collect();
                            let (l, c) = find_key(&d.text, &path).unwrap_or((1, 1));
                            (d.file.display().to_string(), d.line + l - 1, c)
                        }
                        None => ("<settings>".to_string(), 0, 0),
                    };
                    LoadError {
                        file,
                        line,
                        column,
                        resource: Some(e.resource),
                        field: Some(e.field),
                        reason: e.reason,
                    }
                })
                .collect(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
kind: Environment
metadata: {name: dev}
spec:
  subPath: dev
vars: {who: Universe}
---
kind: AppDeployment
metadata: {name: web-v1}
spec:
  app: web
  version: v1
  components:
    frontend:
      version: f1
      endpoints: [\"127.0.0.1:9101\"]
      options: {loadbalancing: hash}
      routes:
        - match: {pathPrefix: /hello}
";

    #[test]
    fn documents_keep_their_lines() {
        let docs = parse_text(Path::new("r.yaml"), GOOD).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].line, docs[1].line), (1, 7));
    }

    #[test]
    fn validation_errors_name_file_line_field_and_reason() {
        let docs = parse_text(Path::new("r.yaml"), GOOD).unwrap();
        let errors = compile(&docs, Settings::default()).unwrap_err().0;
        assert_eq!(errors.len(), 1);
        let e = &errors[0];
        assert_eq!(e.file, "r.yaml");
        assert_eq!(e.line, 16, "the options line: {e}");
        assert_eq!(e.resource.as_deref(), Some("AppDeployment/web-v1"));
        assert_eq!(e.field.as_deref(), Some("spec.components.frontend.options"));
        assert_eq!(
            e.reason,
            "Hash header must be present when loadbalancing is set to hash."
        );
    }

    #[test]
    fn unknown_fields_are_located() {
        let text = GOOD.replace("  subPath: dev", "  subPath: dev\n  colour: red");
        let errors = parse_text(Path::new("r.yaml"), &text).unwrap_err().0;
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].line, 5, "{}", errors[0]);
        assert!(errors[0].reason.contains("colour"), "{}", errors[0]);
    }

    /// (line, column, field, reason) of every problem of `text` in `file`.
    fn located(file: &str, text: &str) -> Vec<(usize, usize, String, String)> {
        let docs = parse_text(Path::new(file), text).unwrap();
        let errors = compile(&docs, Settings::default()).unwrap_err().0;
        errors
            .into_iter()
            .map(|e| (e.line, e.column, e.field.unwrap_or_default(), e.reason))
            .collect()
    }

    fn route_options(i: usize) -> String {
        format!("spec.components.web.routes[{i}].options")
    }

    const MULTI_ROUTE: &str = "\
kind: AppDeployment
metadata: {name: web-v1}
spec:
  app: web
  components:
    web:
      version: w1
      endpoints: [\"127.0.0.1:9301\"]
      options: {loadbalancing: hash, hash_header: tenant-id}
      routes:
      - match: {pathPrefix: /valid}
        options: {hash_header: user-id}
      - match: {pathPrefix: /rr}
        options:
          loadbalancing: round-robin
          hash_header: X-User-ID
      # a comment between routes
      - match: {pathPrefix: /long}
        options: {hash_balance: \"2.111111111111111\", loadbalancing: fastest}
      - match: {pathPrefix: /null}
        options: null
";

    #[test]
    fn every_route_option_problem_is_at_its_own_route() {
        let got = located("r.yaml", MULTI_ROUTE);
        assert_eq!(
            got,
            [
                (
                    14,
                    9,
                    route_options(1),
                    "Hash header can only be set when loadbalancing is hash".into()
                ),
                (
                    19,
                    9,
                    route_options(2),
                    "Loadbalancing must be one of 'round-robin, least-connection, hash' if present"
                        .into()
                ),
                (
                    19,
                    9,
                    route_options(2),
                    "Hash balance must be at most 16 characters".into()
                ),
                (
                    19,
                    9,
                    route_options(2),
                    "Hash balance can only be set when loadbalancing is hash".into()
                ),
                (
                    21,
                    9,
                    route_options(3),
                    "'options' is not a valid object".into()
                ),
            ]
        );
    }

    #[test]
    fn flow_sequences_and_json_arrays_are_indexed() {
        let flow = "\
kind: AppDeployment
metadata: {name: web-v1}
spec:
  app: web
  components:
    web: {version: w1, endpoints: [\"127.0.0.1:9301\"], routes: [{match: {pathPrefix: /a}, options: {loadbalancing: hash}}, {match: {pathPrefix: /b}, options: {}}, {match: {pathPrefix: /c}, options: {hash_balance: x}}]}
";
        let got = located("r.yaml", flow);
        let lines: Vec<(usize, usize, &str)> = got
            .iter()
            .map(|(l, c, f, _)| (*l, *c, f.as_str()))
            .collect();
        let col = |needle: &str| flow.lines().nth(5).unwrap().find(needle).unwrap() + 1;
        assert_eq!(
            lines,
            [
                (6, col("options: {loadbalancing"), route_options(0).as_str()),
                (6, col("options: {hash_balance"), route_options(2).as_str()),
            ]
        );

        let json = r#"[
  {"kind": "AppDeployment", "metadata": {"name": "ok-v1"},
   "spec": {"app": "ok", "components": {"web": {"version": "w1", "endpoints": ["127.0.0.1:9301"],
     "routes": [{"match": {"pathPrefix": "/a"}, "options": {"loadbalancing": "hash", "hash_header": "h"}}]}}}},
  {"kind": "AppDeployment", "metadata": {"name": "web-v1"},
   "spec": {"app": "web", "components": {"web": {"version": "w1", "endpoints": ["127.0.0.1:9301"],
     "routes": [{"match": {"pathPrefix": "/a"}, "options": {}},
                {"match": {"pathPrefix": "/b"}, "options": {"loadbalancing": "hash"}}]}}}}
]"#;
        let got = located("r.json", json);
        let column = json.lines().nth(7).unwrap().find("\"options\"").unwrap() + 1;
        assert_eq!(
            got,
            [(
                8,
                column,
                route_options(1),
                "Hash header must be present when loadbalancing is set to hash.".into()
            )]
        );
    }
}
