//! `sentiflow schema`: Glue JSON or Athena DDL from the schema module.

use anyhow::Result;

#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub(crate) struct SchemaCli {
    /// The JSON infra/terraform/glue_schema.json holds.
    #[arg(long)]
    glue_json: bool,
    /// The CREATE EXTERNAL TABLE statements of sql/athena/ddl.sql.
    #[arg(long)]
    athena_ddl: bool,
}

pub(crate) fn run(s: SchemaCli) -> Result<()> {
    if s.glue_json {
        println!("{}", serde_json::to_string_pretty(&sentiflow_jobs::schema::glue_json())?);
    } else {
        print!("{}", sentiflow_jobs::schema::athena_ddl());
    }
    Ok(())
}
