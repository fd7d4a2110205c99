//! The thesis's training hyper-parameters: the defaults of every training plugin, and the one
//! check of the optimiser settings they share. (The settings are not one `#[serde(flatten)]`
//! struct because serde's `flatten` and `deny_unknown_fields` do not work together, and typo
//! detection in `with:` matters more.)

pub fn layers() -> i64 {
    3
}
pub fn width() -> i64 {
    50
}
pub fn epochs() -> usize {
    50
}
pub fn batch_size() -> usize {
    32
}
pub fn lr() -> f64 {
    0.001
}
pub fn clip() -> f64 {
    5.0
}
pub fn threads() -> usize {
    1
}

/// A plugin's `clip` as a gradient-norm bound: `clip: 0` disables clipping.
pub fn clip_norm(clip: f64) -> Option<f64> {
    (clip > 0.0).then_some(clip)
}

/// The check every training plugin applies to its optimiser settings: `Err((field, message))`.
pub fn check_optimiser(batch_size: usize, lr: f64, clip: f64) -> Result<(), (String, String)> {
    if batch_size == 0 {
        return Err(("batch_size".into(), "must be at least 1".into()));
    }
    if lr.is_nan() || lr <= 0.0 {
        return Err(("lr".into(), format!("must be positive, got {lr}")));
    }
    if clip.is_nan() || clip < 0.0 {
        return Err((
            "clip".into(),
            format!("must be non-negative (0 disables clipping), got {clip}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optimiser_settings_are_checked_by_field() {
        assert!(check_optimiser(batch_size(), lr(), clip()).is_ok());
        assert_eq!(
            check_optimiser(0, lr(), clip()).unwrap_err().0,
            "batch_size"
        );
        assert_eq!(check_optimiser(32, f64::NAN, clip()).unwrap_err().0, "lr");
        assert_eq!(check_optimiser(32, lr(), f64::NAN).unwrap_err().0, "clip");
    }
}
