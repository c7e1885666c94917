//! Where a replay failed: reading its input or writing its output. (A line that is not a valid
//! log line is never an error: it is `rejected` and the replay goes on.)

use std::io;

/// Where a replay failed.
#[derive(Debug)]
pub enum Error {
    /// The input could not be read.
    Input(io::Error),
    /// The output could not be written.
    Output(io::Error),
}
