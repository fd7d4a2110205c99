//! libtorch is installed by `make setup`, linked through the rpath, and computes.

#[test]
fn libtorch_runs_a_tensor_operation() {
    let a = tch::Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
    let b = tch::Tensor::from_slice(&[4.0f32, 5.0, 6.0]);
    let dot = a.dot(&b).double_value(&[]);
    assert_eq!(dot, 32.0);
}
