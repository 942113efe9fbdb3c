//! `peapod explain`: how a container or a pod is isolated, as a table or JSON.

use peapod_pod::Explained;
use peapod_runtime::{Error, Runtime};

use crate::args::{ExplainArgs, Format};
use crate::output::out;
use crate::to_json;

pub(crate) fn run(rt: &Runtime, args: ExplainArgs) -> Result<i32, Error> {
    let text = match (peapod_pod::explain(rt, &args.target)?, args.format) {
        (Explained::Container(report), Format::Json) => to_json(&report)? + "\n",
        (Explained::Pod(report), Format::Json) => to_json(&report)? + "\n",
        (Explained::Container(report), Format::Table) => report.render(args.why, args.mounts),
        (Explained::Pod(report), Format::Table) => report.render(args.why),
    };
    out!("{text}");
    Ok(0)
}
