//! What every custom op of this crate needs around its kernel, in one place.
//!
//! candle's custom-op traits hand a kernel storages and layouts instead of slices, take one
//! storage back from each call, and give the backward pass nothing but tensors. So the ops here
//! view storages as contiguous f32 slices ([`f32_slice`], [`f32_slice_mut`], [`with_cpu_f32`]),
//! let rayon workers fill disjoint parts of one output buffer ([`SendPtr`]), return all the
//! gradients of a backward pass as one flat storage and split it again ([`packed_grads`],
//! [`unpack_grads`]), and pass what the forward pass found (a max-pool's argmax, a BatchNorm's
//! batch statistics) to the backward pass ([`SideChannel`]).
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Result, Shape, Storage, Tensor};
use std::sync::{Arc, OnceLock};

/// The f32 data of a CPU storage under a contiguous layout; `what` names the operand in errors.
pub(crate) fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("{what}: expected f32, got {:?}", s.dtype()) };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{what}: expected a contiguous tensor"),
    }
}

/// [`f32_slice`] for the storage an in-place op writes.
pub(crate) fn f32_slice_mut<'a>(s: &'a mut CpuStorage, l: &Layout, what: &str) -> Result<&'a mut [f32]> {
    let dtype = s.dtype();
    let CpuStorage::F32(v) = s else { candle_core::bail!("{what}: expected f32, got {dtype:?}") };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut v[a..b]),
        None => candle_core::bail!("{what}: expected a contiguous tensor"),
    }
}

/// Runs `f` on a contiguous f32 CPU tensor's data (a tensor an op holds besides its operands).
pub(crate) fn with_cpu_f32<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => f(f32_slice(s, layout, what)?),
        _ => candle_core::bail!("{what}: expected a CPU tensor"),
    }
}

/// A pointer into a buffer that rayon workers fill in disjoint parts where borrows cannot split
/// it (the parts are strided, or cut differently by different jobs of one parallel region).
pub(crate) struct SendPtr<T>(*mut T);

impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for SendPtr<T> {}

// SAFETY: the pointer is only dereferenced through the unsafe methods below, whose callers
// guarantee that no two threads touch the same element.
unsafe impl<T: Send> Send for SendPtr<T> {}
unsafe impl<T: Send> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    pub(crate) fn new(buffer: &mut [T]) -> Self {
        Self(buffer.as_mut_ptr())
    }

    /// The raw pointer. Closures call this (or the methods below) instead of reading the field,
    /// so that they capture the whole `SendPtr`, which may cross threads, not its raw pointer.
    pub(crate) fn ptr(self) -> *mut T {
        self.0
    }

    /// Elements `offset..offset + len` of the buffer.
    ///
    /// # Safety
    /// The range must lie inside the buffer, and nothing else may access those elements while the
    /// slice lives.
    pub(crate) unsafe fn slice_mut<'a>(self, offset: usize, len: usize) -> &'a mut [T] {
        // SAFETY: forwarded to the caller.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(offset), len) }
    }

    /// Writes element `index` of the buffer.
    ///
    /// # Safety
    /// `index` must lie inside the buffer, and no other thread may access that element meanwhile.
    pub(crate) unsafe fn write(self, index: usize, value: T) {
        // SAFETY: forwarded to the caller.
        unsafe { self.0.add(index).write(value) }
    }
}

/// The gradients of a backward op as its one output, `[parts[0] | parts[1] | ...]` flattened;
/// a gradient that was not asked for is an empty part. The first non-empty part's buffer is
/// reused, which saves copying the largest gradient (the input's or the weight's).
pub(crate) fn packed_grads<const N: usize>(parts: [Vec<f32>; N]) -> (CpuStorage, Shape) {
    let total: usize = parts.iter().map(Vec::len).sum();
    let mut parts = parts.into_iter().skip_while(Vec::is_empty);
    let mut packed = parts.next().unwrap_or_default();
    packed.reserve_exact(total - packed.len());
    for p in parts {
        packed.extend_from_slice(&p);
    }
    (CpuStorage::F32(packed), Shape::from(total))
}

/// The gradients of `inputs` cut out of a [`packed_grads`] tensor: part `i` holds
/// `inputs[i].elem_count()` values when `present[i]`, and is missing otherwise. Each comes back
/// shaped like its input (a view of `packed`, no copy); a missing part is `None`.
pub(crate) fn unpack_grads<const N: usize>(
    packed: &Tensor,
    inputs: [&Tensor; N],
    present: [bool; N],
) -> Result<[Option<Tensor>; N]> {
    let mut grads = [const { None }; N];
    let mut offset = 0;
    for ((grad, input), present) in grads.iter_mut().zip(inputs).zip(present) {
        if present {
            let len = input.elem_count();
            *grad = Some(packed.narrow(0, offset, len)?.reshape(input.shape())?);
            offset += len;
        }
    }
    Ok(grads)
}

/// A value that a custom op's forward pass hands to its backward pass, which candle gives only
/// tensors. Clones share the value.
pub(crate) struct SideChannel<T>(Arc<OnceLock<T>>);

impl<T> Clone for SideChannel<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T> Default for SideChannel<T> {
    fn default() -> Self {
        Self(Arc::new(OnceLock::new()))
    }
}

impl<T> SideChannel<T> {
    /// Records the forward pass's value. `apply_op*` runs an op's forward pass once; were it run
    /// again on the same input, it would find the same value, so the first one is kept.
    pub(crate) fn record(&self, value: T) {
        let _ = self.0.set(value);
    }

    /// The recorded value; an error naming `what` when the forward pass has recorded none.
    pub(crate) fn recorded(&self, what: &str) -> Result<&T> {
        self.0.get().ok_or_else(|| candle_core::Error::msg(format!("{what}: the forward pass recorded nothing")))
    }
}
