"""Trains a tiny GAN on a 2-D Gaussian blob with separate Adam optimizers for G and D.

The discriminator step scores ``fake.detach()`` (the standard pattern, so the D loss
does not backpropagate into the generator), and the generator step scores ``fake``
without detaching so the generator is trained through D. There is no bug: every
parameter of both networks gets a gradient and gradcheck should report nothing.
"""

# gradcheck-expect: clean
# gradcheck-exit: 0

import torch
import torch.nn as nn


def main():
    torch.manual_seed(0)
    latent_dim, batch_size = 8, 64
    real_data = torch.randn(512, 2) * 0.5 + torch.tensor([2.0, -1.0])

    generator = nn.Sequential(nn.Linear(latent_dim, 32), nn.ReLU(), nn.Linear(32, 2))
    discriminator = nn.Sequential(nn.Linear(2, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    criterion = nn.BCEWithLogitsLoss()
    ones = torch.ones(batch_size, 1)
    zeros = torch.zeros(batch_size, 1)

    for step in range(8):
        real = real_data[torch.randint(0, real_data.size(0), (batch_size,))]
        fake = generator(torch.randn(batch_size, latent_dim))

        # Discriminator step: real vs. (detached) fake.
        opt_d.zero_grad()
        d_loss = criterion(discriminator(real), ones) + criterion(
            discriminator(fake.detach()), zeros
        )
        d_loss.backward()
        opt_d.step()

        # Generator step: fool the discriminator.
        opt_g.zero_grad()
        g_loss = criterion(discriminator(fake), ones)
        g_loss.backward()
        opt_g.step()

        print(f"step {step}: d_loss {d_loss.item():.4f} g_loss {g_loss.item():.4f}")


if __name__ == "__main__":
    main()
