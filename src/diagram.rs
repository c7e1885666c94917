//! The lifecycle diagram, rendered from the table.

use core::fmt;

use crate::status::Status;
use crate::table;

/// The lifecycle as a Mermaid `stateDiagram-v2`, written from [`crate::table::EDGES`] by its
/// `Display` (no allocation: format it into any `core::fmt::Write`).
///
/// One line per edge in table order, labelled with the event; `[*]` enters at `WAITING` and
/// leaves from each final status. The README's copy is checked against this in the tests.
///
/// ```
/// let text = format!("{}", hpp_session::diagram::Mermaid);
/// assert!(text.contains("    IN_PROGRESS --> COMPLETED: authorize\n"));
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct Mermaid;

impl fmt::Display for Mermaid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "stateDiagram-v2")?;
        writeln!(f, "    [*] --> {}", Status::Waiting)?;
        for edge in table::edges() {
            writeln!(f, "    {} --> {}: {}", edge.from, edge.to, edge.event)?;
        }
        for status in Status::ALL.into_iter().filter(|s| s.is_final()) {
            writeln!(f, "    {status} --> [*]")?;
        }
        Ok(())
    }
}
