"""Trains a small regressor with a Jacobian penalty (``jacrev``) and logs the curvature of the
loss (``hessian``) inside the training step.

The penalty ``||d out / d x||^2`` is computed with ``torch.func.jacrev`` over the input and added
to the loss; the Hessian of the last layer's bias is computed with ``torch.func.hessian`` through
``functional_call`` for logging. There is no bug: every parameter gets a gradient.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch
from torch import nn
from torch.func import functional_call, hessian, jacrev, vmap


def main():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def out_one(x):
        return model(x.unsqueeze(0)).squeeze(0)

    for step in range(4):
        x, y = torch.randn(16, 3), torch.randn(16, 2)
        jac = vmap(jacrev(out_one))(x)  # (16, 2, 3): d out / d x per example
        loss = nn.functional.mse_loss(model(x), y) + 0.01 * jac.pow(2).sum(dim=(1, 2)).mean()

        params = {k: v.detach() for k, v in model.named_parameters()}

        def loss_of_bias(b):
            out = functional_call(model, {**params, "2.bias": b}, (x,))
            return nn.functional.mse_loss(out, y)

        curvature = hessian(loss_of_bias)(params["2.bias"]).trace()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        print(f"step {step}: loss {loss.item():.4f} curvature {curvature.item():.4f}")


if __name__ == "__main__":
    main()
