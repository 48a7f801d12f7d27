using Alora.Kernels;
using Alora.Models;

namespace Alora.Training;

// Legend: as in DecoderTrainer.cs.

public sealed unsafe partial class DecoderTrainer
{
    private int TokenRows => _rowCount * _length;

    /// <summary>Validates the batch, pads it to [B, T], and lists the adapted token rows and the label rows.</summary>
    private void Prepare(IReadOnlyList<TrainingRow> rows, bool allowNoLabels = false)
    {
        ArgumentNullException.ThrowIfNull(rows);
        if (rows.Count == 0) throw new ArgumentException("the batch has no rows", nameof(rows));
        if (rows.Count > MaxRows) throw new ArgumentException($"the batch has {rows.Count} rows; this trainer was sized for {MaxRows}", nameof(rows));
        int length = 0;
        for (int b = 0; b < rows.Count; b++)
        {
            var row = rows[b];
            if (row.InputIds.Length == 0) throw new ArgumentException($"row {b} has no tokens", nameof(rows));
            if (row.InputIds.Length > MaxLength) throw new ArgumentException($"row {b} has {row.InputIds.Length} tokens; this trainer was sized for {MaxLength}", nameof(rows));
            if (row.Labels.Length != row.InputIds.Length)
                throw new ArgumentException($"row {b}: {row.Labels.Length} labels for {row.InputIds.Length} input ids; they must be the same length", nameof(rows));
            length = Math.Max(length, row.InputIds.Length);
        }
        _rowCount = rows.Count;
        _length = length;
        _segments.Clear();
        _labelRows.Clear();
        int vocab = _config.VocabSize;
        for (int b = 0; b < rows.Count; b++)
        {
            var row = rows[b];
            int n = row.InputIds.Length, first = b * length;
            for (int t = 0; t < length; t++)
            {
                int id = t < n ? row.InputIds[t] : 0;   // padding: any valid id; it feeds nothing but later padding
                if ((uint)id >= (uint)vocab) throw new ArgumentException($"row {b}, position {t}: token id {id} is outside the vocabulary [0, {vocab})", nameof(rows));
                _tokens[first + t] = id;
                _positions[first + t] = t;
            }
            // logits[t] predicts labels[t + 1] (the causal-LM shift).
            for (int t = 0; t + 1 < n; t++)
            {
                int label = row.Labels[t + 1];
                if (label == TrainingRow.IgnoreLabel) continue;
                if ((uint)label >= (uint)vocab)
                    throw new ArgumentException($"row {b}, position {t + 1}: label {label} is neither {TrainingRow.IgnoreLabel} nor a token id in [0, {vocab})", nameof(rows));
                _labelRows.Add((first + t, label));
            }
            if (row.AdapterStart is int start && start < n)
            {
                ArgumentOutOfRangeException.ThrowIfNegative(start, nameof(TrainingRow.AdapterStart));
                _segments.Add((first + start, n - start));
            }
        }
        LabelCount = _labelRows.Count;
        if (LabelCount == 0 && !allowNoLabels)
            throw new ArgumentException("no position of the batch has a label other than -100, so the mean loss is undefined", nameof(rows));
    }

    private CausalAttention.Shape AttentionShape => new()
    {
        SequenceCount = _rowCount,
        Length = _length,
        HeadCount = _config.HeadCount,
        KeyValueHeadCount = _config.KeyValueHeadCount,
        HeadDim = _config.HeadDim,
        Scale = _config.AttentionScale,
        SlidingWindow = _config.SlidingWindow ?? 0,
    };

    private ref DecoderBlockBuffers Saved(int layer) => ref _saved[Checkpointing ? 0 : layer];

    private void Forward()
    {
        int m = TokenRows;
        Embedding.Lookup(_layerInputs[0], _weights.Embedding, _tokens, m);
        if (_config.EmbeddingMultiplier != 1f) Elementwise.Scale(_layerInputs[0], _config.EmbeddingMultiplier, (long)m * _config.HiddenSize);
        for (int layer = 0; layer < _config.LayerCount; layer++)
            ForwardLayer(layer, Saved(layer), _layerInputs[layer], _layerInputs[layer + 1]);
    }

    /// <summary>output[M, D] = layer(input[M, D]) (<see cref="DecoderBlock"/>), keeping the intermediates in <paramref name="s"/>.</summary>
    private void ForwardLayer(int layer, in DecoderBlockBuffers s, float* input, float* output)
        => DecoderBlock.Forward(this, _config, _weights.Layers[layer], layer, s, input, output, _positions, _rope, TokenRows);

    void IDecoderBlockOps.Project(float* y, float* x, in WeightMatrix weight, float* bias, int layer, Projection projection)
        => Project(y, x, weight, bias, layer, projection);

    void IDecoderBlockOps.Attend(int layer, float* output, float* logSumExp, float* query, float* key, float* value)
        => CausalAttention.Forward(output, logSumExp, query, key, value, AttentionShape);

    /// <summary>y = x·Wᵀ + bias on every row, plus the adapter's side path on the adapted rows.</summary>
    private void Project(float* y, float* x, in WeightMatrix weight, float* bias, int layer, Projection projection)
    {
        LinearTraining.Forward(y, x, weight, bias, TokenRows);
        if (_adapter?.Get(layer, (int)projection) is not { } lora) return;
        ulong key = _dropoutOn ? _dropout!.ModuleKey(_dropoutStream, layer, (int)projection) : 0;
        foreach (var (start, count) in _segments)
        {
            float* input = x + (long)start * weight.Cols;
            if (_dropoutOn)
            {
                // The side path sees dropout(x); the base path above saw x itself.
                _dropout!.Apply(_dropped, input, key, start, count, weight.Cols);
                input = _dropped;
            }
            if (lora.IsDora) DoraForward(y + (long)start * weight.Rows, input, weight, bias, lora, count);
            else LinearTraining.LoraForward(y + (long)start * weight.Rows, _loraU, input, lora, count);
        }
    }

    /// <summary>
    /// PEFT's DoRA training forward for adapted rows whose base output y = x·Wᵀ + bias is already there:
    /// y += (g − 1)·(x'·Wᵀ) + g·s·(x'·Aᵀ)·Bᵀ with x' = dropout(x) (PEFT recomputes the base product on the dropped
    /// input), or x' = x without dropout, where x'·Wᵀ is y − bias.
    /// </summary>
    private void DoraForward(float* y, float* input, in WeightMatrix weight, float* bias, TrainableModule lora, int count)
    {
        int n = weight.Rows;
        new Span<float>(_doraLora, checked(count * n)).Clear();
        LinearTraining.LoraForward(_doraLora, _loraU, input, lora, count);
        if (_dropoutOn)
        {
            Gemm.MatMul(_doraBase, input, weight, count);
            for (int i = 0; i < count; i++) Dora.AddRow(y + (long)i * n, _doraBase + (long)i * n, _doraLora + (long)i * n, lora.DoraScale, n);
        }
        else
        {
            for (int i = 0; i < count; i++) Dora.CombineRow(y + (long)i * n, _doraLora + (long)i * n, lora.DoraScale, bias, n);
        }
    }

    /// <summary>
    /// DoRA's backward for adapted rows, the norm n a constant: with x' the side path's input and dy the output
    /// gradient, dm[j] += Σ_rows dy[j]·(x'·(W + s·B·A)ᵀ)[j] / n[j]; the side path sees g·dy (dA, dB and its dx);
    /// the rescaled base term adds (g − 1)·dy·W to dx'. <paramref name="dInput"/> receives dx' (accumulated).
    /// </summary>
    private void DoraBackward(float* dInput, float* dy, float* input, in WeightMatrix weight, TrainableModule lora, int count)
    {
        int n = weight.Rows;
        float* g = lora.DoraScale, norm = lora.WeightNorm, dm = lora.DMagnitude;
        // dm: recompute x'·Wᵀ and the side path (cheaper than keeping them for every layer).
        Gemm.MatMul(_doraBase, input, weight, count);
        new Span<float>(_doraLora, checked(count * n)).Clear();
        LinearTraining.LoraForward(_doraLora, _loraU, input, lora, count);
        for (int i = 0; i < count; i++)
        {
            float* dyi = dy + (long)i * n, q = _doraBase + (long)i * n, l = _doraLora + (long)i * n;
            for (int j = 0; j < n; j++) dm[j] += dyi[j] * (q[j] + l[j]) / norm[j];
        }
        // dx' += ((g − 1)·dy)·W
        for (int i = 0; i < count; i++)
        {
            float* dyi = dy + (long)i * n, scaled = _doraDy + (long)i * n;
            for (int j = 0; j < n; j++) scaled[j] = (g[j] - 1f) * dyi[j];
        }
        Gemm.MatMulNoTranspose(dInput, _doraDy, weight, count, accumulate: true);
        // The side path with g·dy: dA, dB, and dx' += s·((g·dy)·B)·A.
        for (int i = 0; i < count; i++)
        {
            float* dyi = dy + (long)i * n, scaled = _doraDy + (long)i * n;
            for (int j = 0; j < n; j++) scaled[j] = g[j] * dyi[j];
        }
        LinearTraining.LoraBackward(dInput, _doraDy, input, lora, count, _loraU, _loraG);
    }

    /// <summary>dx (+)= dy·W on every row, and the adapter's backward (dA, dB, dx) on the adapted rows.</summary>
    private void ProjectBackward(float* dx, float* dy, float* x, in WeightMatrix weight, int layer, Projection projection, bool accumulate)
    {
        LinearTraining.Backward(dx, dy, weight, TokenRows, accumulate);
        if (_adapter?.Get(layer, (int)projection) is not { } lora) return;
        ulong key = _dropoutOn ? _dropout!.ModuleKey(_dropoutStream, layer, (int)projection) : 0;
        foreach (var (start, count) in _segments)
        {
            float* rowsDx = dx + (long)start * weight.Cols, rowsDy = dy + (long)start * weight.Rows, input = x + (long)start * weight.Cols;
            if (!_dropoutOn)
            {
                if (lora.IsDora) DoraBackward(rowsDx, rowsDy, input, weight, lora, count);
                else LinearTraining.LoraBackward(rowsDx, rowsDy, input, lora, count, _loraU, _loraG);
                continue;
            }
            // The same mask as the forward (regenerated from its key): dA uses dropout(x), and the side path's
            // input gradient goes back through the mask and the 1/(1 − p) scale before joining dx.
            long elements = (long)count * weight.Cols;
            _dropout!.Apply(_dropped, input, key, start, count, weight.Cols, _dropMask);
            new Span<float>(_dDropped, checked((int)elements)).Clear();
            if (lora.IsDora) DoraBackward(_dDropped, rowsDy, _dropped, weight, lora, count);
            else LinearTraining.LoraBackward(_dDropped, rowsDy, _dropped, lora, count, _loraU, _loraG);
            _dropout.AddBackward(rowsDx, _dDropped, _dropMask, count, weight.Cols);
        }
    }

    /// <summary>
    /// Final norm, LM head and cross-entropy over the label rows, C at a time; with <paramref name="backward"/>,
    /// d loss / d (final hidden) is written into the label rows of _dHidden. Returns the loss sum / <paramref name="divisor"/>.
    /// </summary>
    private double Head(bool backward, int divisor)
    {
        var c = _config;
        int d = c.HiddenSize, v = c.VocabSize;
        float* final = _layerInputs[c.LayerCount];
        double total = 0;
        float gradientScale = (float)(1.0 / ((double)divisor * c.LogitsScaling));   // mean over labels, through logits / scaling
        for (int begin = 0; begin < _labelRows.Count; begin += _logitChunkRows)
        {
            int count = Math.Min(_logitChunkRows, _labelRows.Count - begin);
            for (int i = 0; i < count; i++)
            {
                var (row, target) = _labelRows[begin + i];
                _sourceRows[i] = row;
                _targets[i] = target;
                Buffer.MemoryCopy(final + (long)row * d, _headHidden + (long)i * d, d * sizeof(float), d * sizeof(float));
            }
            RmsNormTraining.Forward(_headNormed, _headInvRms, _headHidden, _weights.FinalNorm, count, d, c.RmsNormEps);
            Gemm.MatMul(_logits, _headNormed, _weights.LmHead, count);
            if (c.LogitsScaling != 1f) Elementwise.Scale(_logits, 1f / c.LogitsScaling, (long)count * v);
            total += CrossEntropy.Forward(_losses, _logSumExp, _logits, _targets, count, v);
            if (!backward) continue;
            CrossEntropy.Backward(_logits, _logits, _logSumExp, _targets, count, v, gradientScale);
            LinearTraining.Backward(_dHeadNormed, _logits, _weights.LmHead, count, accumulate: false);
            new Span<float>(_dHeadHidden, count * d).Clear();
            RmsNormTraining.Backward(_dHeadHidden, null, _dHeadNormed, _headHidden, _weights.FinalNorm, _headInvRms, count, d);
            for (int i = 0; i < count; i++)
                Elementwise.Add(_dHidden + (long)_sourceRows[i] * d, _dHeadHidden + (long)i * d, d);
        }
        return total / divisor;
    }

    private void Backward()
    {
        // Layers below the lowest adapted one hold no trainable parameter: the backward stops there.
        int lowest = _adapter!.Modules.Count == 0 ? _config.LayerCount : _adapter.Modules.Min(m => m.Layer);
        if (_segments.Count == 0) return;
        for (int layer = _config.LayerCount - 1; layer >= lowest; layer--)
        {
            var saved = Saved(layer);
            if (Checkpointing) ForwardLayer(layer, saved, _layerInputs[layer], _dNormed);   // output discarded
            BackwardLayer(layer, saved, _layerInputs[layer]);
        }
    }

    /// <summary>_dHidden holds d loss / d (layer output); on return, d loss / d (layer input).</summary>
    private void BackwardLayer(int layer, in DecoderBlockBuffers s, float* input)
    {
        var c = _config;
        var w = _weights.Layers[layer];
        int m = TokenRows;

        // MLP block: output = middle + rm·down(silu(gate)·up).
        float* dDown = ScaledResidualGradient();
        ProjectBackward(_dActivation, dDown, s.Activation, w.DownProj, layer, Projection.Down, accumulate: false);
        SiluMulTraining.Backward(_dGate, _dUp, _dActivation, s.Gate, s.Up, (long)m * c.IntermediateSize);
        ProjectBackward(_dNormed, _dGate, s.Normed2, w.GateProj, layer, Projection.Gate, accumulate: false);
        ProjectBackward(_dNormed, _dUp, s.Normed2, w.UpProj, layer, Projection.Up, accumulate: true);
        RmsNormTraining.Backward(_dHidden, null, _dNormed, s.Middle, w.PostAttentionNorm, s.InvRms2, m, c.HiddenSize);

        // Attention block: middle = input + rm·o(attention(rope(q), rope(k), v)).
        float* dOut = ScaledResidualGradient();
        ProjectBackward(_dAttention, dOut, s.Attention, w.OProj, layer, Projection.O, accumulate: false);
        CausalAttention.Backward(_dQuery, _dKey, _dValue, _dAttention, s.Attention, s.LogSumExp, s.Query, s.Key, s.Value, AttentionShape);
        RopeTraining.Backward(_dQuery, _positions, m, c.HeadCount, _rope);
        RopeTraining.Backward(_dKey, _positions, m, c.KeyValueHeadCount, _rope);
        ProjectBackward(_dNormed, _dQuery, s.Normed1, w.QProj, layer, Projection.Q, accumulate: false);
        ProjectBackward(_dNormed, _dKey, s.Normed1, w.KProj, layer, Projection.K, accumulate: true);
        ProjectBackward(_dNormed, _dValue, s.Normed1, w.VProj, layer, Projection.V, accumulate: true);
        RmsNormTraining.Backward(_dHidden, null, _dNormed, input, w.InputNorm, s.InvRms1, m, c.HiddenSize);
    }

    /// <summary>rm·_dHidden: the gradient reaching a block's output projection (the residual stream itself when rm = 1).</summary>
    private float* ScaledResidualGradient()
    {
        float rm = _config.ResidualMultiplier;
        if (rm == 1f) return _dHidden;
        long md = (long)TokenRows * _config.HiddenSize;
        Buffer.MemoryCopy(_dHidden, _dProjected, md * sizeof(float), md * sizeof(float));
        Elementwise.Scale(_dProjected, rm, md);
        return _dProjected;
    }
}
