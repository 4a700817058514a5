//! Placeholder until the script reader lands.
use super::{Entry, InputError};
pub fn parse(file: &str, _text: &str) -> Result<Vec<Entry>, InputError> {
    Err(InputError::new(
        file,
        1,
        "download scripts are not supported yet",
    ))
}
