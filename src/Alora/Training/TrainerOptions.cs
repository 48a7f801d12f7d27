namespace Alora.Training;

/// <summary>
/// Everything a training run is told: the flags of PEFT's alora_finetuning example plus the usual Trainer
/// knobs, with Hugging Face's defaults where the example has none.
/// </summary>
public sealed record TrainerOptions
{
    public required string BaseModel { get; init; }
    public required string DataPath { get; init; }
    public required string OutputDir { get; init; }
    /// <summary>
    /// QLoRA-style: quantize the frozen base's matrices in memory to this type before training (`--quantize q4_k`);
    /// the forward and input-gradient products then run on the quantized blocks. The adapter is saved as usual and
    /// loads on the unquantized base.
    /// </summary>
    public Tensors.DType? Quantize { get; init; }
    /// <summary>"alora" (needs <see cref="InvocationString"/>) or "lora".</summary>
    public string AdapterKind { get; init; } = "alora";
    public string? InvocationString { get; init; }
    /// <summary>The invocation as token ids (PEFT's alora_invocation_tokens), instead of a string.</summary>
    public int[]? InvocationTokenIds { get; init; }
    public int BatchSize { get; init; } = 1;
    public int GradientAccumulationSteps { get; init; } = 1;
    public int NumEpochs { get; init; } = 1;
    /// <summary>Stops after this many optimizer steps (overrides epochs when set).</summary>
    public int? MaxSteps { get; init; }
    public double LearningRate { get; init; } = 3e-4;
    public int CutoffLength { get; init; } = 512;
    /// <summary>A count (≥ 1) or a fraction (&lt; 1) of the examples held out for evaluation; 0 = none.</summary>
    public double ValSetSize { get; init; }
    public int EvalStep { get; init; } = 10;
    public int SaveStep { get; init; } = 100;
    public int LoraR { get; init; } = 32;
    public double LoraAlpha { get; init; } = 32;
    public double LoraDropout { get; init; }
    public IReadOnlyList<string> TargetModules { get; init; } = Models.Projections.PeftNames;
    public bool UseRslora { get; init; }
    /// <summary>PEFT's use_dora (a plain LoRA only): a magnitude vector per projection, trained with A and B.</summary>
    public bool UseDora { get; init; }
    /// <summary>PEFT's init_lora_weights: "true" (Kaiming-uniform A, zero B) or "gaussian".</summary>
    public string InitLoraWeights { get; init; } = "true";
    public string Optimizer { get; init; } = "adamw";
    public double WeightDecay { get; init; }
    /// <summary>0 turns clipping off.</summary>
    public double MaxGradNorm { get; init; } = 1.0;
    public string Scheduler { get; init; } = "linear";
    public int WarmupSteps { get; init; }
    public double LoraPlusRatio { get; init; } = 1.0;
    public int Seed { get; init; } = 42;
    public bool GradientCheckpointing { get; init; }
    public bool TrainOnAllTokens { get; init; }
    /// <summary>Start from this adapter's weights (and its config's rank/alpha/targets/invocation).</summary>
    public string? InitAdapter { get; init; }
    /// <summary>Continue a run from one of its checkpoint-N folders (adapter, optimizer state, position).</summary>
    public string? ResumeFromCheckpoint { get; init; }
}

/// <summary>A progress report after each optimizer step.</summary>
public sealed record TrainingProgress(long Step, long TotalSteps, int Epoch, double Loss, double LearningRate, double TokensPerSecond, TimeSpan Elapsed, double? ValidationLoss)
{
    public TimeSpan EstimatedRemaining => Step == 0 ? TimeSpan.Zero : Elapsed / Step * (TotalSteps - Step);
}

public sealed record TrainingResult(long Steps, double FinalLoss, double? BestValidationLoss, long? BestStep, string OutputDir, double TokensPerSecond);
