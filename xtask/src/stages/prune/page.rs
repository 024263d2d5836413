//! The prune page (the zip's size report) as one self-contained HTML file: a treemap of the kept tree by size beside
//! the bytes each rule removed. The figures travel as JSON inside the page, and the page draws
//! everything from them, so what a reviewer sees is exactly what the tool measured.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::{Policy, Pruned, Totals};
use crate::model::platform::Platform;

const TEMPLATE: &str = include_str!("page.html");
/// Enough detail to see where the size goes, small enough for a page that opens instantly.
const MAX_DEPTH: usize = 8;
const MAX_CHILDREN: usize = 40;

#[derive(Debug, Serialize)]
pub struct PageData {
    pub name: String,
    pub platform: Platform,
    /// The platform's variant the zip is, when it has variants.
    pub variant: Option<String>,
    pub before: Totals,
    pub after: Totals,
    pub rules: Vec<RuleFigure>,
    pub tree: Node,
    pub linkage: LinkageFigures,
}

/// The native-library check, as the page shows it: what the zip needs of the system, and the
/// needed libraries that are not in it.
#[derive(Debug, Default, Serialize)]
pub struct LinkageFigures {
    pub binaries: usize,
    /// `glibc 2.28`, with how many binaries need exactly that and some of them.
    pub requires: Vec<RequirementFigure>,
    /// Absent as the policy expects, per optional_libraries entry.
    pub optional: Vec<OptionalFigure>,
    /// Absent with no explanation: `file needs library`.
    pub unexplained: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct RequirementFigure {
    pub kind: String,
    pub version: String,
    pub count: usize,
    pub binaries: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct OptionalFigure {
    pub name: String,
    pub reason: String,
    pub links: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct RuleFigure {
    pub rule: String,
    pub reason: String,
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Node {
    pub name: String,
    pub size: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Node>,
}

#[derive(Default)]
struct Folder {
    size: u64,
    children: BTreeMap<String, Folder>,
}

impl Folder {
    /// Counts a file's bytes here and in every folder on its way.
    fn add(&mut self, path: &str, size: u64) {
        self.size += size;
        let mut folder = self;
        for part in path.split('/') {
            folder = folder.children.entry(part.to_string()).or_default();
            folder.size += size;
        }
    }
}

pub fn page_data(
    name: &str,
    platform: Platform,
    variant: Option<&str>,
    report: &Pruned,
    policy: &Policy,
) -> PageData {
    let mut root = Folder::default();
    for file in &report.kept_files {
        root.add(&file.path, file.size);
    }
    let total = root.size;
    PageData {
        name: name.to_string(),
        platform,
        variant: variant.map(str::to_string),
        before: report.before,
        after: report.after,
        rules: report
            .rules
            .iter()
            .map(|r| RuleFigure {
                rule: r.rule.clone(),
                reason: policy
                    .rules
                    .iter()
                    .find(|p| p.name == r.rule)
                    .map(|p| p.reason.clone())
                    .unwrap_or_default(),
                files: r.removed.files,
                bytes: r.removed.bytes,
            })
            .collect(),
        tree: node(name.to_string(), root, total, 0),
        linkage: linkage_figures(report, policy),
    }
}

fn linkage_figures(report: &Pruned, policy: &Policy) -> LinkageFigures {
    let l = &report.linkage;
    let mut optional: Vec<OptionalFigure> = Vec::new();
    for m in l.optional() {
        let name = m.optional.clone().unwrap_or_default();
        let link = format!("{} needs {}", m.file, m.library);
        match optional.iter_mut().find(|o| o.name == name) {
            Some(figure) => figure.links.push(link),
            None => optional.push(OptionalFigure {
                reason: policy
                    .optional
                    .iter()
                    .find(|o| o.name == name)
                    .map(|o| o.reason.clone())
                    .unwrap_or_default(),
                name,
                links: vec![link],
            }),
        }
    }
    LinkageFigures {
        binaries: l.binaries,
        requires: l
            .requires
            .iter()
            .map(|(kind, highest)| RequirementFigure {
                kind: kind.to_string(),
                version: highest.version.to_string(),
                count: highest.count,
                binaries: highest.binaries.clone(),
            })
            .collect(),
        optional,
        unexplained: l
            .unexplained()
            .map(|m| format!("{} needs {}", m.file, m.library))
            .collect(),
    }
}

/// Folds a folder into a node: small children (under 0.1% of the whole, or past the 40 largest)
/// become one "(N smaller)" node, so the sizes still add up.
fn node(mut name: String, mut folder: Folder, total: u64, depth: usize) -> Node {
    // A folder that only holds one folder is drawn as one box: `python/lib`, not two.
    while folder.children.len() == 1 && folder.children.values().all(|c| !c.children.is_empty()) {
        let (child_name, child) = folder.children.pop_first().expect("one child");
        name = format!("{name}/{child_name}");
        folder = child;
    }
    if depth >= MAX_DEPTH || folder.children.is_empty() {
        return Node {
            name,
            size: folder.size,
            children: Vec::new(),
        };
    }
    let mut children: Vec<(String, Folder)> = folder.children.into_iter().collect();
    children.sort_by(|a, b| b.1.size.cmp(&a.1.size).then_with(|| a.0.cmp(&b.0)));
    let mut nodes = Vec::new();
    let (mut small_count, mut small_bytes) = (0, 0);
    for (i, (child_name, child)) in children.into_iter().enumerate() {
        if i >= MAX_CHILDREN || child.size * 1000 < total {
            small_count += 1;
            small_bytes += child.size;
        } else {
            nodes.push(node(child_name, child, total, depth + 1));
        }
    }
    if small_count > 0 {
        nodes.push(Node {
            name: format!("({small_count} smaller)"),
            size: small_bytes,
            children: Vec::new(),
        });
    }
    Node {
        name,
        size: folder.size,
        children: nodes,
    }
}

/// The page, with its data in place. `</` is escaped so no path can close the script element.
pub fn render(data: &PageData) -> Result<String> {
    let json = serde_json::to_string(data)?.replace("</", "<\\/");
    Ok(TEMPLATE.replace("/*DATA*/", &json))
}

pub fn write(path: &Path, data: &PageData) -> Result<()> {
    crate::util::atomic::write_atomic(path, render(data)?.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_children_fold_into_one_node_and_sizes_add_up() {
        let mut root = Folder::default();
        for (path, size) in [
            ("big/a", 5000u64),
            ("big/b", 4000),
            ("tiny/c", 3),
            ("tiny2/d", 2),
        ] {
            root.add(path, size);
        }
        let total = root.size;
        let tree = node("anymatix".into(), root, total, 0);
        assert_eq!(tree.size, 9005);
        let names: Vec<&str> = tree.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["big", "(2 smaller)"]);
        assert_eq!(tree.children.iter().map(|c| c.size).sum::<u64>(), tree.size);
        assert_eq!(tree.children[0].children[0].name, "a");
    }

    #[test]
    fn single_folder_chains_become_one_box() {
        let mut root = Folder::default();
        for (path, size) in [
            ("python/lib/python3.12/os.py", 10u64),
            ("python/lib/python3.12/re.py", 20),
        ] {
            root.add(path, size);
        }
        let tree = node("anymatix".into(), root, 30, 0);
        assert_eq!(tree.name, "anymatix/python/lib/python3.12");
        assert_eq!(tree.children.len(), 2);
    }

    #[test]
    fn data_cannot_close_the_script_element() {
        let data = PageData {
            name: "</script><script>alert(1)</script>".into(),
            platform: Platform::LinuxX86_64,
            variant: Some("</script>".into()),
            before: Totals::default(),
            after: Totals::default(),
            rules: Vec::new(),
            tree: Node {
                name: "x".into(),
                size: 0,
                children: Vec::new(),
            },
            linkage: LinkageFigures::default(),
        };
        let page = render(&data).unwrap();
        assert_eq!(
            page.matches("</script>").count(),
            TEMPLATE.matches("</script>").count()
        );
    }
}
