using Alora.Kernels;
using Alora.Models;
using Alora.Tensors;

namespace Alora.Training;

// Legend: B = sequences in the batch, T = padded length (longest row), M = B·T token rows (row b·T + t),
// D = hidden, F = intermediate, Dq = Hq·Dh, Dkv = Hkv·Dh, V = vocab, L = layers, r = LoRA rank,
// C = rows of logits computed at once.

/// <summary>
/// Forward and backward of the decoder for LoRA/aLoRA training: the base weights are frozen, only the adapter's
/// A and B (and DoRA's magnitude vectors) get gradients. A batch of rows of different lengths is right-padded to T internally. Activations live
/// in one slab sized for <c>maxRows × maxLength</c> token rows, reused by every step. Without checkpointing each
/// layer keeps what its backward needs; with checkpointing only each layer's input is kept and the layer's forward
/// is run again during the backward. Not thread-safe: one owner calls it.
/// </summary>
public sealed unsafe partial class DecoderTrainer : IDisposable, IDecoderBlockOps
{
    private readonly ModelWeights _weights;
    private readonly ModelConfig _config;
    private readonly TrainableLora? _adapter;
    private readonly RopeTable _rope;
    private readonly NativeSlab _slab;
    private readonly int _capacityRows;     // maxRows × maxLength
    private readonly int _logitChunkRows;   // C

    private readonly int* _tokens;          // [M]
    private readonly int* _positions;       // [M] t of row b·T + t
    private readonly float*[] _layerInputs; // L + 1 buffers [M, D]; the last is the final hidden state
    private readonly DecoderBlockBuffers[] _saved;   // what each layer's backward needs: L sets, or 1 reused set with checkpointing

    // Backward work buffers.
    private readonly float* _projected;     // [M, D] o_proj / down_proj output
    private readonly float* _dHidden;       // [M, D] gradient of the residual stream
    private readonly float* _dNormed;       // [M, D]
    private readonly float* _dProjected;    // [M, D] residual gradient × residual multiplier
    private readonly float* _dQuery;        // [M, Dq]
    private readonly float* _dKey;          // [M, Dkv]
    private readonly float* _dValue;        // [M, Dkv]
    private readonly float* _dAttention;    // [M, Dq]
    private readonly float* _dGate;         // [M, F]
    private readonly float* _dUp;           // [M, F]
    private readonly float* _dActivation;   // [M, F]
    private readonly float* _loraU;         // [M, r]
    private readonly float* _loraG;         // [M, r]
    private readonly LoraDropout? _dropout; // null: no LoRA dropout
    private readonly float* _dropped;       // [M, Kmax] dropout(x) of one module's adapted rows; null without dropout
    private readonly float* _dDropped;      // [M, Kmax] d loss / d dropout(x)
    private readonly byte* _dropMask;       // [M, Kmax] 1 = kept, for the backward of one module
    private readonly float* _doraBase;      // [M, Nmax] x·Wᵀ of one DoRA module's adapted rows (Nmax: widest DoRA output); null without DoRA
    private readonly float* _doraLora;      // [M, Nmax] s·(x·Aᵀ)·Bᵀ of those rows
    private readonly float* _doraDy;        // [M, Nmax] dy scaled per output feature
    private readonly bool _hasDora;
    private bool _dropoutOn;                // training forward (ForwardBackward) with p > 0
    private long _dropoutStream;            // which mask this forward uses

    // Head (final norm, LM head, cross-entropy) over C gathered rows at a time.
    private readonly float* _headHidden;    // [C, D]
    private readonly float* _headNormed;    // [C, D]
    private readonly float* _headInvRms;    // [C]
    private readonly float* _logits;        // [C, V], turned into dlogits in place
    private readonly float* _logSumExp;     // [C]
    private readonly float* _losses;        // [C]
    private readonly float* _dHeadNormed;   // [C, D]
    private readonly float* _dHeadHidden;   // [C, D]
    private readonly int* _targets;         // [C]
    private readonly int* _sourceRows;      // [C] token row each gathered row came from

    private readonly List<(int Start, int Count)> _segments = [];   // adapted token rows
    private readonly List<(int Row, int Target)> _labelRows = [];
    private int _rowCount, _length;         // B and T of the current batch

    /// <param name="dropout">PEFT's lora_dropout on the side path's input during <see cref="ForwardBackward"/>; null or p = 0: none.</param>
    public DecoderTrainer(ModelWeights weights, TrainableLora? adapter, int maxRows, int maxLength, bool checkpointing = false, LoraDropout? dropout = null)
    {
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxRows, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLength, 1);
        if (adapter is not null && adapter.Config.LayerCount != weights.Config.LayerCount)
            throw new ArgumentException($"adapter has {adapter.Config.LayerCount} layers, the model {weights.Config.LayerCount} (wrong base model?)", nameof(adapter));
        if (adapter is not null)
            foreach (var module in adapter.Modules)
            {
                var projection = weights.Layers[module.Layer].Projection(module.Module);
                if (projection.Rows != module.OutFeatures || projection.Cols != module.InFeatures)
                    throw new ArgumentException($"adapter module {module.PeftPrefix} is [{module.OutFeatures}, {module.InFeatures}] (out, in); the model's {module.Module} of layer {module.Layer} is [{projection.Rows}, {projection.Cols}] (wrong base model?)", nameof(adapter));
            }
        _weights = weights;
        _config = weights.Config;
        _adapter = adapter;
        _rope = _config.CreateRopeTable();
        MaxRows = maxRows;
        MaxLength = maxLength;
        Checkpointing = checkpointing;
        _capacityRows = checked(maxRows * maxLength);
        var c = _config;
        _logitChunkRows = Math.Clamp((1 << 22) / c.VocabSize, 1, _capacityRows);
        long m = _capacityRows, chunk = _logitChunkRows;
        int rank = Math.Max(1, adapter?.MaxRank ?? 1);
        int savedSets = checkpointing ? 1 : c.LayerCount;
        _dropout = dropout is { IsActive: true } && adapter is not null ? dropout : null;
        long widestInput = _dropout is null || adapter!.Modules.Count == 0 ? 0 : adapter.Modules.Max(x => x.InFeatures);
        _hasDora = adapter?.HasDora ?? false;
        long widestDora = _hasDora ? adapter!.Modules.Where(x => x.IsDora).Max(x => x.OutFeatures) : 0;

        long perSet = 2 * Floats(m) + Floats(m * c.HiddenSize) * 3 + Floats(m * c.QueryDim) * 2 + Floats(m * c.KeyValueDim) * 2
            + Floats(m * c.HeadCount) + Floats(m * c.IntermediateSize) * 3;
        long bytes = 2 * Floats(m) + (c.LayerCount + 1) * Floats(m * c.HiddenSize) + savedSets * perSet
            + 4 * Floats(m * c.HiddenSize) + 2 * Floats(m * c.QueryDim) + 2 * Floats(m * c.KeyValueDim) + 3 * Floats(m * c.IntermediateSize)
            + 2 * Floats(m * rank) + 2 * Floats(m * widestInput) + NativeSlab.Align(m * widestInput) + 3 * Floats(m * widestDora)
            + 4 * Floats(chunk * c.HiddenSize) + 5 * Floats(chunk) + Floats(chunk * c.VocabSize);
        _slab = new NativeSlab(bytes, "training activations");
        _tokens = (int*)_slab.Take(m * sizeof(int), "tokens");
        _positions = (int*)_slab.Take(m * sizeof(int), "positions");
        _layerInputs = new float*[c.LayerCount + 1];
        for (int l = 0; l <= c.LayerCount; l++) _layerInputs[l] = _slab.TakeFloats(m * c.HiddenSize, $"layer {l} input");
        _saved = new DecoderBlockBuffers[savedSets];
        for (int s = 0; s < savedSets; s++)
        {
            _saved[s] = new DecoderBlockBuffers
            {
                InvRms1 = _slab.TakeFloats(m, "inv rms 1"),
                Normed1 = _slab.TakeFloats(m * c.HiddenSize, "normed 1"),
                Query = _slab.TakeFloats(m * c.QueryDim, "query"),
                Key = _slab.TakeFloats(m * c.KeyValueDim, "key"),
                Value = _slab.TakeFloats(m * c.KeyValueDim, "value"),
                Attention = _slab.TakeFloats(m * c.QueryDim, "attention"),
                LogSumExp = _slab.TakeFloats(m * c.HeadCount, "attention lse"),
                Middle = _slab.TakeFloats(m * c.HiddenSize, "middle"),
                InvRms2 = _slab.TakeFloats(m, "inv rms 2"),
                Normed2 = _slab.TakeFloats(m * c.HiddenSize, "normed 2"),
                Gate = _slab.TakeFloats(m * c.IntermediateSize, "gate"),
                Up = _slab.TakeFloats(m * c.IntermediateSize, "up"),
                Activation = _slab.TakeFloats(m * c.IntermediateSize, "activation"),
            };
        }
        _projected = _slab.TakeFloats(m * c.HiddenSize, "projected");
        for (int s = 0; s < savedSets; s++) _saved[s].Projected = _projected;   // scratch, shared by every layer
        _dHidden = _slab.TakeFloats(m * c.HiddenSize, "dhidden");
        _dNormed = _slab.TakeFloats(m * c.HiddenSize, "dnormed");
        _dProjected = _slab.TakeFloats(m * c.HiddenSize, "dprojected");
        _dQuery = _slab.TakeFloats(m * c.QueryDim, "dquery");
        _dAttention = _slab.TakeFloats(m * c.QueryDim, "dattention");
        _dKey = _slab.TakeFloats(m * c.KeyValueDim, "dkey");
        _dValue = _slab.TakeFloats(m * c.KeyValueDim, "dvalue");
        _dGate = _slab.TakeFloats(m * c.IntermediateSize, "dgate");
        _dUp = _slab.TakeFloats(m * c.IntermediateSize, "dup");
        _dActivation = _slab.TakeFloats(m * c.IntermediateSize, "dactivation");
        _loraU = _slab.TakeFloats(m * rank, "lora u");
        _loraG = _slab.TakeFloats(m * rank, "lora g");
        if (_dropout is not null)
        {
            _dropped = _slab.TakeFloats(m * widestInput, "dropped lora input");
            _dDropped = _slab.TakeFloats(m * widestInput, "dropped lora input gradient");
            _dropMask = (byte*)_slab.Take(m * widestInput, "lora dropout mask");
        }
        if (_hasDora)
        {
            _doraBase = _slab.TakeFloats(m * widestDora, "dora x·Wᵀ");
            _doraLora = _slab.TakeFloats(m * widestDora, "dora side path");
            _doraDy = _slab.TakeFloats(m * widestDora, "dora scaled dy");
        }
        _headHidden = _slab.TakeFloats(chunk * c.HiddenSize, "head hidden");
        _headNormed = _slab.TakeFloats(chunk * c.HiddenSize, "head normed");
        _dHeadNormed = _slab.TakeFloats(chunk * c.HiddenSize, "head dnormed");
        _dHeadHidden = _slab.TakeFloats(chunk * c.HiddenSize, "head dhidden");
        _headInvRms = _slab.TakeFloats(chunk, "head inv rms");
        _logSumExp = _slab.TakeFloats(chunk, "head lse");
        _losses = _slab.TakeFloats(chunk, "head losses");
        _targets = (int*)_slab.TakeFloats(chunk, "head targets");
        _sourceRows = (int*)_slab.TakeFloats(chunk, "head rows");
        _logits = _slab.TakeFloats(chunk * c.VocabSize, "logits");
    }

    private static long Floats(long count) => NativeSlab.Align(count * sizeof(float));

    public int MaxRows { get; }
    public int MaxLength { get; }
    public bool Checkpointing { get; }
    /// <summary>LoRA dropout probability applied by <see cref="ForwardBackward"/> (0: none).</summary>
    public float LoraDropoutProbability => _dropout?.Probability ?? 0f;
    /// <summary>Bytes of the activation slab (fixed at construction; no step allocates more).</summary>
    public long ActivationBytes => _slab.ByteCount;
    /// <summary>Loss positions (pooled over the batch) of the last call.</summary>
    public int LabelCount { get; private set; }

    /// <summary>
    /// Forward and backward over a batch: returns the Hugging Face causal-LM loss (one mean over every (row, t)
    /// whose label t + 1 is not −100) and sets the adapter's gradients to d loss / d A and d loss / d B
    /// (added to the existing gradients when <paramref name="accumulateGradients"/>).
    /// </summary>
    /// <param name="meanOver">
    /// The count the loss sum is divided by; null: this batch's label count. Gradient accumulation over
    /// micro-batches passes the label count of the whole batch to every micro-batch, so the accumulated gradients
    /// (and the summed losses) equal those of one pass over the whole batch; a micro-batch without labels then
    /// contributes 0.
    /// </param>
    /// <param name="dropoutStream">
    /// Selects the LoRA dropout mask (with the seed): the same stream gives the same mask, so the trainer passes a
    /// new one per forward (step × micro-batches + micro-batch). Ignored without dropout.
    /// </param>
    public double ForwardBackward(IReadOnlyList<TrainingRow> rows, bool accumulateGradients = false, int? meanOver = null, long dropoutStream = 0)
    {
        if (_adapter is null) throw new InvalidOperationException("this trainer has no adapter to compute gradients for; use Loss for the forward alone");
        if (meanOver is < 1) throw new ArgumentOutOfRangeException(nameof(meanOver), meanOver, "the loss divisor must be at least 1");
        if (!accumulateGradients) _adapter.ZeroGradients();
        // With an explicit divisor a micro-batch may hold no label at all: it adds nothing to loss or gradients.
        Prepare(rows, allowNoLabels: meanOver is not null);
        if (LabelCount == 0) return 0;
        _dropoutOn = _dropout is not null;
        _dropoutStream = dropoutStream;
        if (_hasDora) _adapter.UpdateDoraScales(_weights);
        Forward();
        new Span<float>(_dHidden, checked(_rowCount * _length * _config.HiddenSize)).Clear();
        double loss = Head(backward: true, meanOver ?? LabelCount);
        Backward();
        return loss;
    }

    /// <summary>The loss alone (no gradients, adapter unchanged).</summary>
    /// <remarks>Evaluation mode: no LoRA dropout, as PEFT's model.eval().</remarks>
    public double Loss(IReadOnlyList<TrainingRow> rows)
    {
        _dropoutOn = false;
        Prepare(rows);
        if (_hasDora) _adapter!.UpdateDoraScales(_weights);
        Forward();
        return Head(backward: false, LabelCount);
    }

    public void Dispose() => _slab.Dispose();
}
