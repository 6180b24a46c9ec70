//! The two migration folders describe one schema history: `migrations/sqlite/` and
//! `migrations/postgres/` hold the same `NNNN_name.sql` files (same versions, same names), so a
//! database of either kind at version N has the same tables.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Version -> file name of every migration of one backend; panics on a malformed folder.
fn migrations(backend: &str) -> BTreeMap<u32, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let pattern = regex::Regex::new(r"^([0-9]{4})_[a-z0-9_]+\.sql$").unwrap();
    let mut out = BTreeMap::new();
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        assert!(path.is_file(), "{}: not a file", path.display());
        let Some(caps) = pattern.captures(&name) else {
            panic!("{backend}/{name}: not named NNNN_name.sql");
        };
        let version: u32 = caps[1].parse().unwrap();
        if let Some(other) = out.insert(version, name.clone()) {
            panic!("{backend}: version {version} twice ({other}, {name})");
        }
    }
    assert!(!out.is_empty(), "{}: no migrations", dir.display());
    out
}

#[test]
fn sqlite_and_postgres_migrations_have_the_same_versions_and_names() {
    let sqlite = migrations("sqlite");
    let postgres = migrations("postgres");
    let versions: BTreeSet<u32> = sqlite.keys().chain(postgres.keys()).copied().collect();
    let show = |f: Option<&String>| f.map_or("(missing)".to_string(), String::clone);
    let differences: Vec<String> = versions
        .into_iter()
        .filter(|v| sqlite.get(v) != postgres.get(v))
        .map(|v| {
            format!(
                "{v:04}: sqlite {}, postgres {}",
                show(sqlite.get(&v)),
                show(postgres.get(&v))
            )
        })
        .collect();
    assert!(
        differences.is_empty(),
        "the migration folders differ:\n{}",
        differences.join("\n")
    );
}
