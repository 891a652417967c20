"""Networks: timm backbones, the multi-task model and its heads, input normalisers, seeded dropout."""
