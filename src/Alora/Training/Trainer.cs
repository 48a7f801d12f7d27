using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Alora.Adapters;
using Alora.Formats;
using Alora.Models;
using Alora.Tokenization;
using Alora.Tokenization.Templates;
using Alora.Training.Data;
using Alora.Training.Optimization;

namespace Alora.Training;

/// <summary>
/// A LoRA/aLoRA training run: data → batches → forward/backward (DecoderTrainer) → clipping → optimizer step,
/// with evaluation every EvalStep steps, checkpoints every SaveStep steps (resumable: adapter, optimizer
/// state, position), the best adapter by validation loss kept in OutputDir/best, and the final adapter in
/// PEFT's format in OutputDir. All input is checked before anything is written.
/// </summary>
public sealed class Trainer(TrainerOptions options)
{
    public TrainerOptions Options { get; } = options;
    /// <summary>Examples the last run dropped because the cutoff left them nothing to learn.</summary>
    public IReadOnlyList<string> SkippedExamples { get; private set; } = [];

    public TrainingResult Run(IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var o = Options;
        Validate(o);
        string modelPath = Formats.HubDownloader.ResolveModelPath(o.BaseModel);
        using var weights = ModelWeights.Load(modelPath);
        if (o.Quantize is Tensors.DType quantize) weights.QuantizeMatrices(quantize);
        if (o.ResumeFromCheckpoint is null && o.InitAdapter is null) CheckTargets(o.TargetModules, weights.Config);
        var tokenizer = Tokenizer.Load(modelPath);
        var chat = Directory.Exists(modelPath) ? TryLoadChatTemplates(modelPath) : null;

        // The adapter to train: fresh (PEFT's init), or from --init_adapter / a checkpoint.
        string? startFrom = o.ResumeFromCheckpoint ?? o.InitAdapter;
        using var adapter = startFrom is not null
            ? LoraAdapter.Load(startFrom, weights.Config, "train", tokenizer)
            : LoraAdapter.Create("train", NewConfig(o, tokenizer, modelPath), weights, o.Seed);
        // pissa/olora moved part of each targeted W into the adapter (the model now holds the residual): every save
        // converts to a plain LoRA of the original base, which needs the factors as they were at init (PEFT's
        // path_initial_model_for_weight_conversion).
        using var initial = startFrom is null && LoraAdapter.RewritesBaseWeights(o.InitLoraWeights) ? adapter.Copy("initial") : null;
        if (o.AdapterKind == "alora" && !adapter.IsActivated)
            throw new TrainingDataException($"{startFrom}: AdapterKind alora, but this adapter has no alora_invocation_tokens");
        int[]? invocation = adapter.InvocationTokens;

        // Data: every line is checked before anything is written.
        var skipped = new List<string>();
        var examples = TrainingDataLoader.Load(o.DataPath, tokenizer, chat,
            new TrainingDataOptions { CutoffLength = o.CutoffLength, InvocationTokens = invocation, ActivationShift = adapter.ActivationShift, TrainOnAllTokens = o.TrainOnAllTokens }, skipped);
        SkippedExamples = skipped;
        var (train, validation) = TrainingBatches.Split(examples, o.ValSetSize, o.Seed);
        if (train.Count == 0) throw new TrainingDataException($"{o.DataPath}: no training examples remain after the validation split");

        bool createdOutput = !Directory.Exists(o.OutputDir);
        EnsureWritable(o.OutputDir);
        try
        {
            return Train(o, weights, adapter, initial, train, validation, progress, cancellationToken);
        }
        catch when (createdOutput && !Directory.EnumerateFileSystemEntries(o.OutputDir).Any())
        {
            Directory.Delete(o.OutputDir);
            throw;
        }
    }

    private static TrainingResult Train(TrainerOptions o, ModelWeights weights, LoraAdapter adapter, LoraAdapter? initial, IReadOnlyList<TrainingExample> train,
        IReadOnlyList<TrainingExample> validation, IProgress<TrainingProgress>? progress, CancellationToken cancellationToken)
    {
        // The trainable view shares the adapter's A and B: an optimizer step updates the adapter that is saved.
        using var trainable = new TrainableLora(adapter);

        int maxLength = Math.Max(train.Max(e => e.InputIds.Length), validation.Count == 0 ? 0 : validation.Max(e => e.InputIds.Length));
        // PEFT's lora_dropout, seeded by --seed: a fresh mask per forward, regenerated for that forward's backward.
        using var model = new DecoderTrainer(weights, trainable, o.BatchSize, maxLength, o.GradientCheckpointing,
            new LoraDropout((float)o.LoraDropout, o.Seed));
        var parameters = trainable.TrainableTensors();
        var optimizer = Optimizer.Create(parameters, new OptimizerOptions
        {
            Kind = o.Optimizer, LearningRate = o.LearningRate, WeightDecay = o.WeightDecay, LoraPlusRatio = o.LoraPlusRatio,
        });

        int microBatchesPerEpoch = (train.Count + o.BatchSize - 1) / o.BatchSize;
        int stepsPerEpoch = (microBatchesPerEpoch + o.GradientAccumulationSteps - 1) / o.GradientAccumulationSteps;
        long totalSteps = o.MaxSteps ?? (long)stepsPerEpoch * o.NumEpochs;
        var log = new TrainingLog();
        long step = 0;
        int startEpoch = 0, skipMicroBatches = 0;
        double? bestValidation = null;
        long? bestStep = null;
        if (o.ResumeFromCheckpoint is { } checkpoint)
            (step, startEpoch, skipMicroBatches, bestValidation, bestStep) = Resume(checkpoint, optimizer, log);

        var clock = Stopwatch.StartNew();
        long tokens = 0;
        double lastLoss = double.NaN;
        for (int epoch = startEpoch; step < totalSteps; epoch++)
        {
            var microBatches = TrainingBatches.Epoch(train, o.BatchSize, o.Seed, epoch).ToList();
            int index = epoch == startEpoch ? skipMicroBatches : 0;
            while (index < microBatches.Count && step < totalSteps)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var group = microBatches.Skip(index).Take(o.GradientAccumulationSteps).ToList();
                index += group.Count;
                // One pooled mean over every label of the accumulated batch, as one big batch would give.
                int labels = group.Sum(b => b.LossTokenCount);
                if (labels == 0) continue;
                double loss = 0;
                for (int g = 0; g < group.Count; g++)
                {
                    var rows = TrainingRow.FromBatch(group[g], trainable);
                    loss += model.ForwardBackward(rows, accumulateGradients: g > 0, meanOver: labels,
                        dropoutStream: step * o.GradientAccumulationSteps + g);
                    tokens += group[g].Lengths.Sum();
                }
                GradientClipping.ClipByGlobalNorm(parameters, o.MaxGradNorm);
                double rate = LearningRateSchedule.At(o.Scheduler, o.LearningRate, step, totalSteps, o.WarmupSteps);
                optimizer.Apply(rate);
                trainable.ParametersChanged();
                step++;
                lastLoss = loss;

                double? validationLoss = null;
                if (validation.Count > 0 && (step % o.EvalStep == 0 || step == totalSteps))
                {
                    validationLoss = Evaluate(model, trainable, validation, o.BatchSize);
                    if (bestValidation is null || validationLoss < bestValidation)
                    {
                        bestValidation = validationLoss;
                        bestStep = step;
                        SaveAdapter(adapter, initial, Path.Combine(o.OutputDir, "best"));
                    }
                }
                log.Add(step, epoch, loss, rate, validationLoss);
                if (step % o.SaveStep == 0 && step < totalSteps)
                {
                    SaveCheckpoint(Path.Combine(o.OutputDir, $"checkpoint-{step}"), adapter, initial, optimizer, log, step, epoch, index, bestValidation, bestStep);
                }
                progress?.Report(new TrainingProgress(step, totalSteps, epoch, loss, rate, tokens / Math.Max(1e-9, clock.Elapsed.TotalSeconds), clock.Elapsed, validationLoss));
            }
        }

        SaveAdapter(adapter, initial, o.OutputDir);
        log.Write(o.OutputDir);
        return new TrainingResult(step, lastLoss, bestValidation, bestStep, o.OutputDir, tokens / Math.Max(1e-9, clock.Elapsed.TotalSeconds));
    }

    /// <summary>The pooled mean loss over every label of the validation set.</summary>
    private static double Evaluate(DecoderTrainer model, TrainableLora trainable, IReadOnlyList<TrainingExample> validation, int batchSize)
    {
        double total = 0;
        long count = 0;
        foreach (var batch in TrainingBatches.Epoch(validation, batchSize, seed: 0, epoch: 0, shuffle: false))
        {
            double loss = model.Loss(TrainingRow.FromBatch(batch, trainable));
            total += loss * model.LabelCount;
            count += model.LabelCount;
        }
        return count == 0 ? double.NaN : total / count;
    }

    /// <summary>PEFT's two files, each written to a temporary name and renamed (LoraAdapter.Save).</summary>
    /// <remarks>With <paramref name="initial"/> (a pissa/olora run) the file is the rank-2r plain LoRA of the original base.</remarks>
    private static void SaveAdapter(LoraAdapter adapter, LoraAdapter? initial, string folder)
    {
        Directory.CreateDirectory(folder);
        WriteAdapter(adapter, initial, folder);
    }

    private static void WriteAdapter(LoraAdapter adapter, LoraAdapter? initial, string folder)
    {
        if (initial is null)
        {
            adapter.Save(folder);
            return;
        }
        using var converted = adapter.ToPlainLora(initial, adapter.Name);
        converted.Save(folder);
    }

    private static void SaveCheckpoint(string folder, LoraAdapter adapter, LoraAdapter? initial, Optimizer optimizer, TrainingLog log, long step, int epoch, int nextMicroBatch,
        double? bestValidation, long? bestStep)
    {
        string temporary = folder + ".tmp";
        if (Directory.Exists(temporary)) Directory.Delete(temporary, recursive: true);
        Directory.CreateDirectory(temporary);
        WriteAdapter(adapter, initial, temporary);
        var state = optimizer.State().Select(s => SafeTensorToWrite.FromFloats(s.Name, [s.Values.Length], s.Values)).ToList();
        SafeTensorsWriter.Write(Path.Combine(temporary, "optimizer.safetensors"), state);
        log.Write(temporary);
        var trainerState = new JsonObject
        {
            ["global_step"] = step,
            ["epoch"] = epoch,
            ["next_micro_batch"] = nextMicroBatch,
            ["optimizer"] = optimizer.Options.Kind,
            ["best_metric"] = bestValidation,
            ["best_step"] = bestStep,
        };
        AtomicFile.WriteAllText(Path.Combine(temporary, "trainer_state.json"), trainerState.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        Directory.Move(temporary, folder);
    }

    private static (long Step, int Epoch, int NextMicroBatch, double? Best, long? BestStep) Resume(string checkpoint, Optimizer optimizer, TrainingLog log)
    {
        string statePath = Path.Combine(checkpoint, "trainer_state.json");
        if (!File.Exists(statePath)) throw new TrainingDataException($"{checkpoint}: not a checkpoint (no trainer_state.json)");
        var state = JsonNode.Parse(File.ReadAllText(statePath))!.AsObject();
        long step = state["global_step"]!.GetValue<long>();
        using (var file = SafeTensorsFile.Open(Path.Combine(checkpoint, "optimizer.safetensors")))
            optimizer.LoadState(file.Tensors.Keys.ToDictionary(k => k, k => file.ReadFloats(k)), step);
        string csv = Path.Combine(checkpoint, "loss_curve.csv");
        if (File.Exists(csv)) log.Restore(TrainingLog.ReadCsv(csv));
        return (step, state["epoch"]!.GetValue<int>(), state["next_micro_batch"]!.GetValue<int>(), state["best_metric"]?.GetValue<double>(), state["best_step"]?.GetValue<long>());
    }

    private static LoraConfig NewConfig(TrainerOptions o, Tokenizer tokenizer, string modelPath)
    {
        int[]? invocation = null;
        if (o.AdapterKind == "alora" && o.InvocationTokenIds is { } ids)
        {
            invocation = ids;
            foreach (int id in ids)
                if ((uint)id >= (uint)tokenizer.VocabSize) throw new TrainingDataException($"InvocationTokenIds: id {id} is outside the vocabulary [0, {tokenizer.VocabSize})");
        }
        else if (o.AdapterKind == "alora")
        {
            invocation = InvocationTokens.Encode(tokenizer, o.InvocationString!);
            if (invocation.Length == 0) throw new TrainingDataException($"InvocationString \"{o.InvocationString}\" tokenizes to no ids");
        }
        return new LoraConfig
        {
            R = o.LoraR,
            LoraAlpha = o.LoraAlpha,
            UseRslora = o.UseRslora,
            UseDora = o.UseDora,
            LoraDropout = o.LoraDropout,
            TargetModules = o.TargetModules,
            InitLoraWeights = o.InitLoraWeights,
            AloraInvocationTokens = invocation,
            BaseModelNameOrPath = o.BaseModel,
        };
    }

    /// <summary>
    /// Every target_modules entry must name modules of the model, as PEFT insists: a misspelt name or an embedding
    /// next to real projections is an error that names it, never silently dropped.
    /// </summary>
    private static void CheckTargets(IReadOnlyList<string> targets, ModelConfig config)
    {
        var paths = Enumerable.Range(0, config.LayerCount).SelectMany(layer => Projections.PeftNames.Select(module => ParameterLayout.ProjectionName(layer, module))).ToArray();
        foreach (string target in targets)
        {
            if (target == "all-linear" || paths.Any(p => p == target || p.EndsWith("." + target, StringComparison.Ordinal))) continue;
            string bare = target[(target.LastIndexOf('.') + 1)..];
            string why = bare is "embed_tokens" or "lm_head" or "wte" or "output"
                ? $"'{target}' is the embedding or output layer; LoRA there (PEFT's lora_embedding_A/B) is not supported: target the projections ({string.Join(", ", Projections.PeftNames)})"
                : bare.EndsWith("norm", StringComparison.Ordinal) || bare.EndsWith("layernorm", StringComparison.Ordinal)
                    ? $"'{target}' is a norm, not a linear layer; LoRA targets linear layers ({string.Join(", ", Projections.PeftNames)})"
                    : $"'{target}' matches no module of this {config.Architecture} model (its modules are model.layers.N.self_attn.q_proj and the like: {string.Join(", ", Projections.PeftNames)}, or all-linear)";
            throw new ArgumentException($"target_modules: {why}");
        }
    }

    private static ChatTemplateConfig? TryLoadChatTemplates(string folder)
    {
        var config = ChatTemplateConfig.Load(folder);
        return config.Templates.Count > 0 ? config : null;
    }

    private static void EnsureWritable(string folder)
    {
        try
        {
            Directory.CreateDirectory(folder);
            string probe = Path.Combine(folder, $".alora-write-test-{Guid.NewGuid():N}");
            File.WriteAllText(probe, "");
            File.Delete(probe);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TrainingDataException($"the output folder {folder} cannot be written: {e.Message}");
        }
    }

    private static void Validate(TrainerOptions o)
    {
        void Require(bool condition, string message) { if (!condition) throw new ArgumentException(message); }
        Require(o.AdapterKind is "alora" or "lora", $"AdapterKind must be alora or lora, got '{o.AdapterKind}'");
        Require(o.AdapterKind != "alora" || o.InitAdapter is not null || o.ResumeFromCheckpoint is not null || !string.IsNullOrEmpty(o.InvocationString) || o.InvocationTokenIds is { Length: > 0 },
            "AdapterKind alora needs InvocationString (the text that switches the adapter on) or InvocationTokenIds");
        Require(o.BatchSize >= 1, $"BatchSize must be ≥ 1, got {o.BatchSize}");
        Require(o.GradientAccumulationSteps >= 1, $"GradientAccumulationSteps must be ≥ 1, got {o.GradientAccumulationSteps}");
        Require(o.NumEpochs >= 1 || o.MaxSteps is > 0, $"NumEpochs must be ≥ 1, got {o.NumEpochs}");
        Require(o.MaxSteps is null or > 0, $"MaxSteps must be > 0, got {o.MaxSteps}");
        Require(o.CutoffLength >= 2, $"CutoffLength must be ≥ 2, got {o.CutoffLength}");
        Require(o.EvalStep >= 1 && o.SaveStep >= 1, "EvalStep and SaveStep must be ≥ 1");
        Require(o.LoraR >= 1, $"LoraR must be ≥ 1, got {o.LoraR}");
        Require(o.MaxGradNorm >= 0, $"MaxGradNorm must be ≥ 0 (0 turns clipping off), got {o.MaxGradNorm}");
        Require(o.LoraDropout is >= 0 and < 1, $"LoraDropout must be in [0, 1), got {o.LoraDropout}");
        Require(!o.InitLoraWeights.StartsWith("pissa_niter_", StringComparison.Ordinal),
            $"InitLoraWeights '{o.InitLoraWeights}': PEFT's randomized-SVD PiSSA depends on torch's random stream and cannot be reproduced exactly; use pissa (full SVD)");
        Require(o.InitLoraWeights is "true" or "false" or "gaussian" or "pissa" or "olora", $"InitLoraWeights '{o.InitLoraWeights}': expected true, false, gaussian, pissa or olora");
        Require(!LoraAdapter.RewritesBaseWeights(o.InitLoraWeights) || o.AdapterKind != "alora",
            $"InitLoraWeights {o.InitLoraWeights} with AdapterKind alora: an aLoRA leaves the tokens before its invocation to the base model, which {o.InitLoraWeights} would replace by a residual; use true or gaussian");
        Require(!LoraAdapter.RewritesBaseWeights(o.InitLoraWeights) || (o.InitAdapter is null && o.ResumeFromCheckpoint is null),
            $"InitLoraWeights {o.InitLoraWeights} initialises a new adapter from the base weights; it cannot start from InitAdapter or ResumeFromCheckpoint " +
            "(its saved adapters are already converted to plain rank-2r LoRAs of the original base; resume them as a new run with InitAdapter and InitLoraWeights true)");
        Require(!o.UseDora || o.AdapterKind == "lora",
            "UseDora with AdapterKind alora: PEFT refuses DoRA on an aLoRA (DoRA rescales the whole weight, so the tokens before the invocation could not keep the base model's KV cache); use AdapterKind lora");
        Require(!o.UseDora || !LoraAdapter.RewritesBaseWeights(o.InitLoraWeights),
            $"UseDora with InitLoraWeights {o.InitLoraWeights}: the saved adapter must be converted to a plain LoRA of the original base, which DoRA's magnitude rescaling does not allow; use true or gaussian");
        Require(!o.UseDora || (o.InitAdapter is null && o.ResumeFromCheckpoint is null),
            "UseDora applies to a new adapter; InitAdapter and ResumeFromCheckpoint take use_dora from the adapter's own adapter_config.json");
        _ = LearningRateSchedule.Multiplier(o.Scheduler, 0, 1, 0);
    }
}
