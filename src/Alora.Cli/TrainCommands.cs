using System.CommandLine;
using System.Globalization;
using Alora.Training;

namespace Alora.Cli;

/// <summary>`alora train`: the flags of PEFT's alora_finetuning example, plus the usual Trainer knobs.</summary>
internal static class TrainCommands
{
    public static Command Train()
    {
        var baseModel = new Option<string>("--base_model") { Description = "Base model: HF folder, .gguf or Hub id", Required = true };
        var dataPath = new Option<string>("--data_path") { Description = "JSONL training data", Required = true };
        var outputDir = new Option<string>("--output_dir") { Description = "Where the adapter, checkpoints and loss curve go", Required = true };
        var adapter = new Option<string>("--adapter") { Description = "alora (needs --invocation_string) or lora", DefaultValueFactory = _ => "alora" };
        var batchSize = new Option<int>("--batch_size") { DefaultValueFactory = _ => 1 };
        var accumulation = new Option<int>("--gradient_accumulation_steps") { DefaultValueFactory = _ => 1 };
        var numEpochs = new Option<int>("--num_epochs") { DefaultValueFactory = _ => 1 };
        var maxSteps = new Option<int?>("--max_steps") { Description = "Stop after this many optimizer steps (overrides --num_epochs)" };
        var learningRate = new Option<double>("--learning_rate") { DefaultValueFactory = _ => 3e-4 };
        var cutoffLength = new Option<int>("--cutoff_len") { DefaultValueFactory = _ => 512 };
        var valSetSize = new Option<double>("--val_set_size") { Description = "Held-out examples: a count, or a fraction below 1", DefaultValueFactory = _ => 0 };
        var invocation = new Option<string?>("--invocation_string") { Description = "The text whose tokens switch the aLoRA on" };
        var invocationIds = new Option<string?>("--invocation_tokens") { Description = "The invocation as comma-separated token ids (as they appear in context)" };
        var evalStep = new Option<int>("--eval_step") { DefaultValueFactory = _ => 10 };
        var saveStep = new Option<int>("--save_step") { DefaultValueFactory = _ => 100 };
        var loraR = new Option<int>("--lora_r") { DefaultValueFactory = _ => 32 };
        var loraAlpha = new Option<double>("--lora_alpha") { DefaultValueFactory = _ => 32 };
        var loraDropout = new Option<double>("--lora_dropout") { Description = "Dropout on the LoRA input (PEFT example default)", DefaultValueFactory = _ => 0.05 };
        var targets = new Option<string?>("--lora_target_modules") { Description = "Comma-separated projections (default: all seven)" };
        var optimizer = new Option<string>("--optimizer") { Description = "adamw or sgd", DefaultValueFactory = _ => "adamw" };
        var weightDecay = new Option<double>("--weight_decay") { DefaultValueFactory = _ => 0 };
        var maxGradNorm = new Option<double>("--max_grad_norm") { Description = "0 turns clipping off", DefaultValueFactory = _ => 1.0 };
        var scheduler = new Option<string>("--lr_scheduler_type") { Description = "linear, cosine or constant", DefaultValueFactory = _ => "linear" };
        var warmup = new Option<int>("--warmup_steps") { DefaultValueFactory = _ => 0 };
        var loraPlus = new Option<double>("--loraplus_lr_ratio") { Description = "LoRA+: B learns this many times faster", DefaultValueFactory = _ => 1 };
        var seed = new Option<int>("--seed") { DefaultValueFactory = _ => 42 };
        var checkpointing = new Option<bool>("--gradient_checkpointing");
        var allTokens = new Option<bool>("--train_on_all_tokens") { Description = "Loss on the prompt too, not only the response" };
        var rslora = new Option<bool>("--use_rslora");
        var dora = new Option<bool>("--use_dora") { Description = "DoRA (PEFT's use_dora; --adapter lora only): also trains a magnitude vector per projection" };
        var init = new Option<string>("--init_lora_weights") { Description = "true (Kaiming-uniform A, zero B), false (both Kaiming-uniform: not a no-op, for debugging, as PEFT allows), gaussian, pissa or olora (PEFT's; pissa/olora adapters are saved converted to rank-2r LoRAs of the original base)", DefaultValueFactory = _ => "true" };
        var initAdapter = new Option<string?>("--init_adapter") { Description = "Start from this adapter's weights" };
        var resume = new Option<string?>("--resume_from_checkpoint") { Description = "Continue from OUTPUT_DIR/checkpoint-N" };
        var quantize = new Option<string?>("--quantize") { Description = "QLoRA-style: train on a base quantized in memory to q8_0, q4_0, q4_k, … (the adapter loads on the unquantized base)" };

        var command = new Command("train", "Train a LoRA or aLoRA adapter on JSONL data; saves it in PEFT's format");
        foreach (var option in new Option[] { baseModel, dataPath, outputDir, adapter, batchSize, accumulation, numEpochs, maxSteps, learningRate, cutoffLength,
            valSetSize, invocation, invocationIds, evalStep, saveStep, loraR, loraAlpha, loraDropout, targets, optimizer, weightDecay, maxGradNorm, scheduler, warmup,
            loraPlus, seed, checkpointing, allTokens, rslora, dora, init, initAdapter, resume, quantize })
            command.Options.Add(option);
        command.SetAction((parse, cancellationToken) =>
        {
            var options = new TrainerOptions
            {
                BaseModel = parse.GetValue(baseModel)!,
                DataPath = parse.GetValue(dataPath)!,
                OutputDir = parse.GetValue(outputDir)!,
                AdapterKind = parse.GetValue(adapter)!,
                BatchSize = parse.GetValue(batchSize),
                GradientAccumulationSteps = parse.GetValue(accumulation),
                NumEpochs = parse.GetValue(numEpochs),
                MaxSteps = parse.GetValue(maxSteps),
                LearningRate = parse.GetValue(learningRate),
                CutoffLength = parse.GetValue(cutoffLength),
                ValSetSize = parse.GetValue(valSetSize),
                InvocationString = parse.GetValue(invocation),
                InvocationTokenIds = parse.GetValue(invocationIds) is { } idText ? GenerateCommands.ParseIds(idText, int.MaxValue) : null,
                EvalStep = parse.GetValue(evalStep),
                SaveStep = parse.GetValue(saveStep),
                LoraR = parse.GetValue(loraR),
                LoraAlpha = parse.GetValue(loraAlpha),
                LoraDropout = parse.GetValue(loraDropout),
                TargetModules = parse.GetValue(targets) is { } t
                    ? t.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
                    : new TrainerOptions { BaseModel = "", DataPath = "", OutputDir = "" }.TargetModules,
                Optimizer = parse.GetValue(optimizer)!,
                WeightDecay = parse.GetValue(weightDecay),
                MaxGradNorm = parse.GetValue(maxGradNorm),
                Scheduler = parse.GetValue(scheduler)!,
                WarmupSteps = parse.GetValue(warmup),
                LoraPlusRatio = parse.GetValue(loraPlus),
                Seed = parse.GetValue(seed),
                GradientCheckpointing = parse.GetValue(checkpointing),
                TrainOnAllTokens = parse.GetValue(allTokens),
                UseRslora = parse.GetValue(rslora),
                UseDora = parse.GetValue(dora),
                InitLoraWeights = parse.GetValue(init)!,
                InitAdapter = parse.GetValue(initAdapter),
                ResumeFromCheckpoint = parse.GetValue(resume),
                Quantize = parse.GetValue(quantize) is string q ? Alora.Models.ModelWeights.ParseQuantization(q) : null,
            };
            var bar = new ProgressBar(Console.Error);
            var trainer = new Trainer(options);
            TrainingResult result;
            try { result = trainer.Run(bar, cancellationToken); }
            catch (Exception e) when (e is ArgumentException or Alora.Training.Data.TrainingDataException)
            {
                // The library names TrainerOptions' properties; the command line names the flags that set them.
                throw new CliException(FlagNames.Translate(e.Message));
            }
            bar.Finish();
            if (trainer.SkippedExamples.Count > 0)
                Console.Error.WriteLine($"skipped {trainer.SkippedExamples.Count} example(s) with nothing to learn within --cutoff_len, e.g. {trainer.SkippedExamples[0]}");
            string best = result.BestValidationLoss is double b
                ? string.Create(CultureInfo.InvariantCulture, $" (best validation loss {b:F4} at step {result.BestStep}, in {Path.Combine(result.OutputDir, "best")})")
                : "";
            Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"trained {result.Steps} steps, final loss {result.FinalLoss:F4}, {result.TokensPerSecond:F0} tokens/s; adapter saved to {result.OutputDir}{best}"));
            return Task.FromResult(0);
        });
        return command;
    }

    /// <summary>A one-line live progress bar: step, loss, learning rate, tokens/s and ETA, redrawn in place.</summary>
    private sealed class ProgressBar(TextWriter writer) : IProgress<TrainingProgress>
    {
        private bool _drawn;

        public void Report(TrainingProgress p)
        {
            const int width = 24;
            int filled = p.TotalSteps == 0 ? width : (int)(width * p.Step / p.TotalSteps);
            string validation = p.ValidationLoss is double v ? string.Create(CultureInfo.InvariantCulture, $" val {v:F4}") : "";
            writer.Write(string.Create(CultureInfo.InvariantCulture,
                $"\r[{new string('#', filled)}{new string('.', width - filled)}] {p.Step}/{p.TotalSteps} epoch {p.Epoch} loss {p.Loss:F4}{validation} lr {p.LearningRate:E2} {p.TokensPerSecond:F0} tok/s ETA {p.EstimatedRemaining:hh\\:mm\\:ss}   "));
            _drawn = true;
        }

        public void Finish()
        {
            if (_drawn) writer.WriteLine();
        }
    }
}

/// <summary>TrainerOptions' property names as `alora train` flags, for the library's messages.</summary>
internal static class FlagNames
{
    private static readonly (string Property, string Flag)[] Map =
    [
        ("GradientAccumulationSteps", "--gradient_accumulation_steps"), ("ResumeFromCheckpoint", "--resume_from_checkpoint"),
        ("InvocationTokenIds", "--invocation_tokens"), ("InvocationString", "--invocation_string"), ("InitLoraWeights", "--init_lora_weights"),
        ("CutoffLength", "--cutoff_len"), ("ValSetSize", "--val_set_size"), ("MaxGradNorm", "--max_grad_norm"), ("LoraDropout", "--lora_dropout"), ("InitAdapter", "--init_adapter"),
        ("AdapterKind", "--adapter"), ("BatchSize", "--batch_size"), ("NumEpochs", "--num_epochs"), ("MaxSteps", "--max_steps"),
        ("EvalStep", "--eval_step"), ("SaveStep", "--save_step"), ("UseDora", "--use_dora"), ("LoraR", "--lora_r"),
    ];

    public static string Translate(string message)
    {
        foreach (var (property, flag) in Map)
            message = System.Text.RegularExpressions.Regex.Replace(message, $@"\b{property}\b", flag);
        return message;
    }
}
