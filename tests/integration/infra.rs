//! infra/: the Glue/Athena schemas cannot drift from the schema module, and the container
//! image's layout (binary, ONNX Runtime beside it in ../lib, model in ../share) works.

use sentiflow_jobs::schema::Table;

use crate::common::*;

#[test]
fn glue_json_and_athena_ddl_are_generated_from_the_schema_module() {
    let glue = ok(&["schema", "--glue-json"]);
    let committed = std::fs::read_to_string(repo().join("infra/terraform/glue_schema.json")).unwrap();
    assert_eq!(
        glue.trim(),
        committed.trim(),
        "infra/terraform/glue_schema.json is stale: sentiflow schema --glue-json > infra/terraform/glue_schema.json"
    );
    let ddl = ok(&["schema", "--athena-ddl"]);
    let committed = std::fs::read_to_string(repo().join("sql/athena/ddl.sql")).unwrap();
    assert_eq!(ddl, committed, "sql/athena/ddl.sql is stale: sentiflow schema --athena-ddl > sql/athena/ddl.sql");

    // and what they hold is the schema module's: names, types, partition keys, in order
    let j: serde_json::Value = serde_json::from_str(&glue).unwrap();
    for t in Table::ALL {
        let g = &j["tables"][t.sql_name()];
        let cols: Vec<(String, String)> = g["columns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap().to_string(), c["type"].as_str().unwrap().to_string()))
            .collect();
        let want: Vec<(String, String)> = t
            .schema()
            .fields()
            .iter()
            .map(|f| {
                let ty = match f.data_type() {
                    datafusion::arrow::datatypes::DataType::Utf8 => "string",
                    datafusion::arrow::datatypes::DataType::Float64 => "double",
                    datafusion::arrow::datatypes::DataType::Int64 => "bigint",
                    datafusion::arrow::datatypes::DataType::Timestamp(_, _) => "timestamp",
                    other => panic!("no Athena type for {other}"),
                };
                (f.name().clone(), ty.to_string())
            })
            .collect();
        assert_eq!(cols, want, "{}", t.sql_name());
        let keys: Vec<&str> =
            g["partition_keys"].as_array().unwrap().iter().map(|k| k["name"].as_str().unwrap()).collect();
        assert_eq!(keys, t.partition_keys(), "{}", t.sql_name());
        assert_eq!(g["dir"], t.dir());
        for k in t.partition_keys() {
            assert!(ddl.contains(&format!("'projection.{k}.type'")), "DDL projects {k}");
        }
    }
}

#[cfg(unix)]
#[test]
fn the_container_layout_finds_runtime_and_model_beside_the_binary() {
    // infra/docker/Dockerfile: /usr/local/bin/sentiflow, /usr/local/lib/libonnxruntime.so.1.31.1,
    // /usr/local/share/sentiflow/models/sentiment-minilm; no ORT_DYLIB_PATH, no checkout
    let d = tmp();
    let prefix = d.path().join("usr/local");
    for sub in ["bin", "lib", "share/sentiflow/models"] {
        std::fs::create_dir_all(prefix.join(sub)).unwrap();
    }
    std::fs::copy(env!("CARGO_BIN_EXE_sentiflow"), prefix.join("bin/sentiflow")).unwrap();
    let lib = std::env::var("ORT_DYLIB_PATH").expect("ORT_DYLIB_PATH (scripts/setup-ort.sh) to copy the library from");
    std::fs::copy(&lib, prefix.join("lib/libonnxruntime.so.1.31.1")).unwrap();
    let model = repo().join("sample_data/models/sentiment-minilm");
    let dest = prefix.join("share/sentiflow/models/sentiment-minilm");
    std::fs::create_dir_all(&dest).unwrap();
    for f in std::fs::read_dir(&model).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), dest.join(f.file_name())).unwrap();
    }
    let data = d.path().join("sst2.tsv");
    std::fs::write(&data, "text\tlabel\na wonderful , moving film\t1\ndull and lifeless\t0\n").unwrap();
    let out = std::process::Command::new(prefix.join("bin/sentiflow"))
        .args(["eval", "--data", &s(&data), "--label-names", "negative,positive", "--json"])
        .current_dir(d.path())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(j["scorer"].as_str().unwrap().starts_with("onnx:sentiment-minilm@"), "{j}");
    assert_eq!(j["accuracy"], 1.0, "{j}");
}
