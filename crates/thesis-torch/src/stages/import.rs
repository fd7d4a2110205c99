//! `model.import`'s computation: reads the weight file, renames and checks its tensors, and
//! writes the model and its config.

use crate::nn;
use crate::nn::import::{import_model, NameRules};
use pipe_engine::stage::{StageContext, StageError};
use pipe_thesis::stages::import::ImportParams;

/// Imports the weight file of a `model.import` instance and writes its outputs (the plugin is
/// [`pipe_thesis::stages::import::Import`]).
pub fn run(params: ImportParams, ctx: &mut StageContext<'_>) -> Result<(), StageError> {
    let _torch = nn::TorchThreads::acquire(1);
    let rules = NameRules::new(&params.rename, &params.drop).map_err(StageError::failed)?;
    let config = params.model_config();
    let path = ctx.project_path(&params.file);
    let model =
        import_model(&path, params.format, &rules, config.clone()).map_err(StageError::failed)?;
    model
        .save(&ctx.output("model.safetensors"))
        .map_err(StageError::failed)?;
    let json = serde_json::to_vec_pretty(&config).map_err(StageError::failed)?;
    std::fs::write(ctx.output("config.json"), json)
        .map_err(|e| StageError::io("cannot write config.json", e))?;
    let parameters: i64 = model
        .named_parameters()
        .iter()
        .map(|(_, t)| t.numel() as i64)
        .sum();
    ctx.set_metrics(serde_json::json!({
        "tensors": model.named_parameters().len() + model.named_masks().len(),
        "parameters": parameters,
    }));
    Ok(())
}
