//! `mastdl query`: a MAST search's products as a `mast:` URI list (stdout
//! or `-o FILE`) or a product table (`--table FILE`).

use std::fs;
use std::io::{self, Write};

use anyhow::Context as _;

use super::http;
use crate::error::Exit;
use crate::query::{self, Product};
use crate::settings::{QueryOutput, QuerySettings};

/// Returns true if and only if `p`'s file name (`productFilename`, else
/// the URI's last segment, as the planner names it) passes `--extension`.
fn has_extension(p: &Product, exts: &[String]) -> bool {
    let name = match &p.product_filename {
        Some(f) => std::borrow::Cow::Borrowed(f.as_str()),
        None => crate::layout::filename(&p.data_uri),
    };
    crate::input::filter::has_extension(&name, exts)
}

/// Writes `products` as the output asks.
fn write(w: &mut dyn Write, products: &[Product], output: &QueryOutput) -> anyhow::Result<()> {
    match output {
        QueryOutput::Table(_) => query::write_table(&mut *w, products)?,
        QueryOutput::List(_) => {
            for p in products {
                writeln!(w, "{}", p.data_uri)?;
            }
        }
    }
    Ok(w.flush()?)
}

/// The most connections `query` opens to one host (it takes no `-j`).
const QUERY_CONNECTIONS: usize = 4;

/// Runs `query`.
pub(crate) async fn query(s: QuerySettings) -> anyhow::Result<Exit> {
    let net = &s.network;
    let http = http(&net.base, &net.client, QUERY_CONNECTIONS, Vec::new())?;
    let mut products = query::products(&http, &net.base, net.token.as_ref(), &s.criteria).await?;
    products.retain(|p| has_extension(p, &s.extensions));
    match s.output.path() {
        Some(path) => {
            let file = fs::File::create(path)
                .with_context(|| format!("Cannot create `{}`", path.display()))?;
            write(&mut io::BufWriter::new(file), &products, &s.output)?;
        }
        None => write(
            &mut io::BufWriter::new(io::stdout().lock()),
            &products,
            &s.output,
        )?,
    }
    crate::progress::say(format_args!("{} products", products.len()));
    Ok(Exit::Success)
}
